"""Checksums and CRCs of the appliance UART dialects, table-driven."""

from __future__ import annotations


def _reflected_table(poly: int, width: int) -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc & ((1 << width) - 1))
    return tuple(table)


_CRC8_MAXIM = _reflected_table(0x8C, 8)  # Dallas/Maxim 1-Wire: reflected 0x31, init 0
_CRC16_ARC = _reflected_table(0xA001, 16)  # ARC: reflected 0x8005, init 0


def crc8_maxim(data: bytes | bytearray | memoryview) -> int:
    crc = 0
    for byte in data:
        crc = _CRC8_MAXIM[crc ^ byte]
    return crc


def crc16_arc(data: bytes | bytearray | memoryview) -> int:
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _CRC16_ARC[(crc ^ byte) & 0xFF]
    return crc


def twos_complement_sum(data: bytes | bytearray | memoryview) -> int:
    """Midea frame checksum: the byte that makes the sum of the covered bytes zero (mod 256)."""
    return (~sum(data) + 1) & 0xFF


def sum8(data: bytes | bytearray | memoryview) -> int:
    """Haier checksum: low byte of the sum."""
    return sum(data) & 0xFF
