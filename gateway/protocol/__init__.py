"""Sans-IO codecs: bytes in, typed records or counted rejections out. No sockets, no asyncio."""
