"""bench/loadlib.py: what the Python load drivers (clients.py, soak.py) share: an SMTP reply
reader and command over asyncio streams, a process's RSS from /proc, and percentiles."""


async def reply(reader):
    """Reads one whole (possibly multi-line) reply; its code."""
    while True:
        line = await reader.readline()
        if not line:
            raise RuntimeError("connection closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def command(reader, writer, line, want):
    """Sends a command line and raises unless the reply's code is `want`."""
    writer.write(line + b"\r\n")
    code = await reply(reader)
    if code != want:
        raise RuntimeError(f"{line!r} -> {code}")


def rss_kib(pid):
    """Resident memory of process `pid` in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def percentile(values, p):
    """The `p`th percentile of `values` (nearest rank); NaN when there are none."""
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * (len(values) - 1) + 0.5))]
