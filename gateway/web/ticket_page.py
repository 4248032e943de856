"""The ticket page: the case as a technician reads it before the visit and a home owner checks it after.

What was measured against which limit, the derived values, the ranked causes with what ruled the others out,
the checks to make, the standard price with its currency, the technician in a form a phone shows whole, the
service steps in words in both languages, and the forms in the order the service goes. A pure function of
the ticket, its timeline and the appliance's profile.
"""

from __future__ import annotations

import html
import time
from typing import Any

from gateway.engine.profiles import Profile
from gateway.web import pages
from gateway.web.access import Role
from gateway.web.charts import TAP_SCRIPT, Marker, Threshold, chart_svg
from gateway.web.device_charts import LIMIT_OPS
from gateway.web.units import both_names, metric_label, metric_unit, with_unit

esc = html.escape
OPS = {"<": "below", "<=": "at or below", ">": "above", ">=": "at or above", "==": "equal to", "!=": "not"}


def ticket_html(ticket_id: int, payload: dict[str, Any], timeline: dict[str, Any], message: str, role: Role,
                seal: dict[str, Any], profile: Profile | None) -> str:
    fault = payload["fault"]
    owner = role.name == "admin"
    explanation = fault.get("explanation") or {}
    appliance = payload["appliance"]
    seal_text = {True: "valid: this is the ticket as the gateway sealed it",
                 False: f"TAMPERED: {seal['detail']}", None: seal["detail"]}[seal["valid"]]
    link = (f"<p><button type='button' id='make-link' onclick=\"fetch('/api/tickets/{ticket_id}/technician-link',"
            "{credentials:'same-origin'}).then(r=>r.json()).then(j=>{document.getElementById('link').textContent="
            "j.path?location.origin+j.path:j.error;})\">Make a technician link</button> <code id='link'></code></p>"
            if owner and not timeline["closed"] else "")
    body = f"""<h1 id="title">{esc(fault['title']['en'])}<br>{esc(fault['title']['zh'])}</h1>
{f"<p class='msg' id='message'>{esc(message)}</p>" if message else ""}
<p>{esc(appliance['brand'])} {esc(appliance['model'])}
(<a href="/devices/{esc(appliance['device_id'])}">{esc(appliance['device_id'])}</a>),
code {esc(fault['code'])}, severity {esc(fault['severity'])}.<br>State: <b id="state"
data-state="{esc(timeline['state'])}">{esc(pages.state_words(timeline['state']))}</b></p>
<p id="explanation">{esc(explanation.get('en', ''))}<br>{esc(explanation.get('zh', ''))}</p>
<p id="seal" class="{'valid-ok' if seal['valid'] else 'valid-bad'}">Seal: {esc(seal_text)}</p>
{_measured(payload, profile)}
{_causes(payload)}
{_list_section("checks", "Checks to make / 检查项目", payload.get("checks") or [])}
{_list_section("parts", "Parts to bring / 可能需要的配件", payload.get("parts") or [])}
{_price(payload)}
{_charge_flags(timeline)}
<h2>Evidence / 数据证据</h2><div id="evidence" class="charts">{evidence_charts(payload, profile) or
                                                "<p>no telemetry window in this ticket</p>"}</div>
{_technician(ticket_id, timeline, owner)}{confirm_forms(ticket_id, timeline) if owner else ""}{link}
<h2>Service timeline / 服务进度</h2><ol id="timeline">{_steps(timeline, payload)}</ol>{TAP_SCRIPT}"""
    return pages.page(f"Ticket {ticket_id}", body, live=False, nav=owner)


def _measured(payload: dict[str, Any], profile: Profile | None) -> str:
    """Every condition of every finding: what was measured, the rule's limit, and that it broke it."""
    rows = []
    findings = payload.get("findings_detail") or [{"rule": payload["evidence"]["rule"]["id"],
                                                   "evidence": payload["evidence"]}]
    for finding in findings:
        evidence = finding.get("evidence") or {}
        for observed in evidence.get("observed", []):
            quantity = str(observed.get("quantity", ""))
            unit = metric_unit(profile, quantity)
            limit = observed.get("threshold")
            rows.append(
                f"<tr class='observed'><td data-label='Measured'>{esc(both_names(profile, quantity))}"
                f"<br><small><code>{esc(quantity)}</code></small></td>"
                f"<td data-label='Value' class='{'valid-bad' if observed.get('op') in LIMIT_OPS else ''}'>"
                f"{esc(with_unit(observed.get('value'), unit))}</td>"
                f"<td data-label='Rule'>{esc(OPS.get(str(observed.get('op')), str(observed.get('op'))))} "
                f"{esc(with_unit(limit, unit)) if limit is not None else ''}</td>"
                f"<td data-label='From rule'><code>{esc(str(finding.get('rule', '')))}</code></td></tr>")
    derived = payload["evidence"].get("derived") or {}
    derived_rows = "".join(
        f"<tr><td data-label='Derived'>{esc(both_names(profile, name))}</td>"
        f"<td data-label='Value'>{esc(with_unit(value, metric_unit(profile, name)))}</td>"
        f"<td data-label='How'><code>{esc(_derived_formula(profile, name))}</code></td></tr>"
        for name, value in derived.items() if value is not None)
    rule = payload["evidence"]["rule"]
    held = f" for {rule['for_seconds']:g} s" if rule.get("for_seconds") else ""
    return (f"<h2>What the gateway measured / 实测数据</h2><p class='stat'>Each value broke its rule's limit{held} "
            "before the ticket opened (the rule: "
            f"<code>{esc(str(rule.get('expr', '')))}</code>).</p>"
            "<table id='observed' class='cards'><tr><th>Measured</th><th>Value</th><th>Rule's limit</th><th>Rule</th>"
            f"</tr>{''.join(rows)}</table>"
            + (f"<h3>Derived values / 推算值</h3><table id='derived' class='cards'><tr><th>Derived</th><th>Value</th>"
               f"<th>How</th></tr>{derived_rows}</table>" if derived_rows else ""))


def _derived_formula(profile: Profile | None, name: str) -> str:
    for derived in profile.derived if profile else ():
        if derived.name == name:
            return derived.expr.source
    return ""


def _causes(payload: dict[str, Any]) -> str:
    causes = "".join(f"<li>{esc(c['cause'])} ({float(c.get('likelihood', 0)):.0%}): "
                     f"{esc(str(c.get('reason', '')))}</li>" for c in payload.get("probable_causes", []))
    ruled_out = "".join(f"<li><s>{esc(str(r.get('cause', '')))}</s>: ruled out because "
                        f"{esc('; '.join(str(b) for b in r.get('because', [])))}</li>"
                        for r in payload.get("ruled_out", []))
    return (f"<h2>Probable causes / 可能原因</h2><ol id='causes'>{causes}</ol>"
            + (f"<h3>Ruled out / 已排除</h3><ul id='ruled-out'>{ruled_out}</ul>" if ruled_out else ""))


def _list_section(element_id: str, title: str, items: list[str]) -> str:
    if not items:
        return ""
    return f"<h2>{esc(title)}</h2><ul id='{element_id}'>{''.join(f'<li>{esc(str(i))}</li>' for i in items)}</ul>"


def _price(payload: dict[str, Any]) -> str:
    price = payload.get("price") or {}
    currency = str(price.get("currency", ""))
    items = "".join(f"<li>{esc(i['title']['en'])} / {esc(i['title']['zh'])}: {_band(i['band'], currency)}</li>"
                    for i in price.get("items", []))
    total = price.get("total_band")
    return (f"<h2>Standard price / 标准价格</h2><ul id='price'>{items}</ul>"
            + (f"<p id='total'>Total / 合计 {_band(total, currency)}</p>" if total else ""))


def _band(band: list[float], currency: str) -> str:
    return f"{band[0]:g}-{band[1]:g} {esc(currency)}"


def _charge_flags(timeline: dict[str, Any]) -> str:
    flags = "".join(f"<li class='{'ok' if f['explained'] else 'warn'}'>{esc(f['problem'])}</li>"
                    for f in timeline["charge_flags"])
    return f"<h2>Charges that differ from the diagnosis</h2><ul id='flags'>{flags}</ul>" if flags else ""


def _technician(ticket_id: int, timeline: dict[str, Any], owner: bool) -> str:
    technician = timeline.get("technician")
    if not technician:
        return ""
    verified = (timeline["visit_code"] or {}).get("verified")
    who = (f"<h2>Technician / 技师</h2><p id='technician'><b>{esc(technician['name'])}</b><br>Employee / 工号 "
           f"{esc(technician['employee_id'])}<br>Badge photo / 工牌照片 {_short_hash(technician['photo_sha256'])}<br>"
           f"<b class='{'valid-ok' if verified else 'warn'}'>"
           f"{'verified on site / 已现场核验' if verified else 'not yet verified on site / 尚未现场核验'}</b></p>")
    if owner and not verified:
        who += (f"<form method='post' action='/tickets/{ticket_id}/visit-code'><label>Visit code shown by "
                f"{esc(technician['name'])}: <input name='code' inputmode='numeric' autocomplete='one-time-code' "
                "required></label> <button>Verify</button></form>")
    return who


def _short_hash(digest: str) -> str:
    """The first 12 hex digits, with the whole digest to copy: a 64-digit hash widened a phone's page."""
    return f"<code title='sha256 {esc(digest)}'>{esc(digest[:12])}…</code>"


def confirm_forms(ticket_id: int, timeline: dict[str, Any]) -> str:
    """Confirmation once the telemetry has verified the repair; before that, only "without verification" with a
    reason. No rating is preset: the customer chooses one."""
    if not timeline["repaired"] or timeline["confirmed"]:
        return ""
    rating = ("<label>Rating / 评分 <select name='rating' required><option value=''>choose / 请选择</option>"
              + "".join(f"<option value='{n}'>{n}</option>" for n in (5, 4, 3, 2, 1)) + "</select></label> "
              "<label>Comment / 评价 <input name='comment' maxlength='2000'></label> ")
    action = f"/tickets/{ticket_id}/confirm"
    if timeline["verified"]:
        return (f"<form id='confirm' method='post' action='{action}'><p>The telemetry shows the repair holds. / "
                f"运行数据已确认修复。</p>{rating}<button>Confirm repair / 确认维修</button></form>")
    return ("<p id='awaiting-verification'>Waiting for the telemetry to verify the repair: the appliance must "
            "report normally with the fault clear for a while. / 等待运行数据确认修复。</p>"
            "<details><summary>Confirm without verification / 未经数据确认而确认</summary>"
            f"<form id='confirm-unverified' method='post' action='{action}'>{rating}<label>Why now / 原因 "
            "<input name='without_verification' required maxlength='500'></label> "
            "<button>Confirm without verification</button></form></details>")


def _steps(timeline: dict[str, Any], payload: dict[str, Any]) -> str:
    titles = {i["id"]: i["title"] for i in (payload.get("price") or {}).get("items", [])}
    currency = str((payload.get("price") or {}).get("currency", ""))
    return "".join(
        f"<li data-step='{esc(s['step'])}'><b>{esc(s['title']['en'])}</b> / {esc(s['title']['zh'])}<br><small>"
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(s['at']))} by {esc(s['actor'])} ({esc(s['source'])})"
        f"</small>{_step_extra(s, titles, currency)}</li>" for s in timeline["steps"])


def _step_extra(step: dict[str, Any], titles: dict[str, dict[str, str]], currency: str) -> str:
    detail = step["detail"]
    if step["step"] in ("technician_assigned", "technician_verified") and "technician" in detail:
        who = detail["technician"]
        return (f"<br>{esc(who['name'])}, employee {esc(who['employee_id'])}, badge photo "
                f"{_short_hash(who['photo_sha256'])}")
    if step["step"] == "repaired":
        items = []
        for item in detail.get("items", []):
            title = titles.get(item["id"])
            name = f"{title['en']} / {title['zh']}" if title else item["id"].replace("_", " ")
            items.append(f"{esc(name)}: {item['price']:g} {esc(currency)}")
        return "<br>" + "<br>".join(items)
    if step["step"] == "confirmed":
        unverified = detail.get("without_verification") or (
            "on the platform" if detail.get("before_verification") else "")
        return (f"<br>rating {detail.get('rating')} {esc(str(detail.get('comment', '')))}"
                + (f"<br><b>before the telemetry verified the repair</b> ({esc(str(unverified))})" if unverified
                   else ""))
    if step["step"] == "accepted":
        return f"<br>as {esc(str(detail.get('platform_ticket_id', '')))}"
    if step["step"] == "verified_by_telemetry":
        return f"<br>clear for {float(detail.get('dwell_seconds', 0)):g} s while reporting"
    return ""


def evidence_charts(payload: dict[str, Any], profile: Profile | None) -> str:
    """The evidence window of the ticket, one chart per metric the rule compared, its limit drawn."""
    evidence = payload.get("evidence") or {}
    window = evidence.get("window") or {}
    ts = window.get("ts") or []
    if not ts:
        return ""
    specs = {m.name: m for m in profile.metrics} if profile else {}
    onset = min((f["onset_ts"] for f in payload.get("findings", [])), default=ts[0])
    charts = []
    seen: set[str] = set()
    wanted = [(str(o.get("quantity")), o, "") for o in evidence.get("observed", [])] + [
        (metric, None, f"Rules out {r.get('cause', '')}: {'; '.join(str(b) for b in r.get('because', []))}")
        for r in payload.get("ruled_out", []) for metric in r.get("metrics", [])]
    for name, observed, note in wanted:
        values = (window.get("metrics") or {}).get(name)
        if not values or name not in specs or name in seen:
            continue
        seen.add(name)
        series = {"ts": ts, "mean": values, "min": values, "max": values}
        spec = specs[name]
        limit, op = (observed.get("threshold"), str(observed.get("op"))) if observed else (None, "")
        thresholds = [] if limit is None or op not in LIMIT_OPS else [Threshold(float(limit), op)]
        chart = chart_svg(metric_label(profile, name), spec.unit, series, ts[0], ts[-1], (spec.low, spec.high),
                          [Marker(onset, "incident", "fault onset")], thresholds, name, spec.zh, dict(spec.states))
        charts.append(chart.replace("<figure class=\"chart-box\">",
                                    f"<figure class=\"chart-box ruling-out\"><p class='stat'>{esc(note)}</p>", 1)
                      if note else chart)
    return "".join(charts)


