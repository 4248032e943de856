from hypothesis import given
from hypothesis import strategies as st

from gateway.protocol import midea


@given(st.builds(midea.ACState, st.booleans(), st.sampled_from([17.0, 22.5, 30.0]), st.sampled_from(list(midea.Mode)),
                 st.integers(0, 102), st.floats(-20, 60).map(lambda t: round(t, 1)),
                 st.floats(-20, 60).map(lambda t: round(t, 1)), st.just(False), st.booleans(), st.integers(0, 255)))
def test_state_body_roundtrip(state: midea.ACState) -> None:
    decoded = midea.decode_state(midea.state_body(state))
    assert decoded == state


def test_compressor_group_roundtrip() -> None:
    group = midea.CompressorGroup(58, 60, 7, 230, 24.5, 9.0, 38.5, 31.0, 74)
    assert midea.decode_compressor_group(midea.compressor_group_body(group)) == group
