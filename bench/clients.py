#!/usr/bin/env python3
"""bench/clients.py: many idle SMTP clients, then a slowloris attack, against one server.

Driven by bench/clients.sh (see there and bench/README.md). Speaks SMTP over asyncio sockets;
reads the server's RSS and CPU time from /proc/PID. Prints a markdown report on stdout.

  clients.py --port P --pid PID [--idle N] [--hold SECS] [--tick SECS]
             [--slow N] [--slow-interval SECS] [--messages M]
"""

import argparse
import asyncio
import os
import time

from loadlib import command, percentile, reply, rss_kib

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def source(n):
    """A loopback source address, so 10,000 connections never run out of ports."""
    return (f"127.0.0.{1 + n % 250}", 0)


async def open_idle(port, n):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=source(n))
    banner = await reader.readline()
    if not banner.startswith(b"220"):
        raise RuntimeError(f"banner {banner!r}")
    return reader, writer


async def open_many(port, count, parallel=200):
    gate = asyncio.Semaphore(parallel)

    async def one(n):
        async with gate:
            return await open_idle(port, n)

    results = await asyncio.gather(*(one(n) for n in range(count)), return_exceptions=True)
    opened = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    return opened, failed


def close_all(conns):
    for _, writer in conns:
        writer.close()


async def send_one(port, n):
    """One message in its own session; the seconds from connect to the 250 after DATA."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await reply(reader) == 220
        for line, want in [
            (b"EHLO normal.client.test", 250),
            (b"MAIL FROM:<normal@client.test>", 250),
            (b"RCPT TO:<inbox@tern.test>", 250),
            (b"DATA", 354),
        ]:
            await command(reader, writer, line, want)
        body = f"Subject: normal {n}\r\n\r\n" + "a line of the body\r\n" * 50
        writer.write(body.encode() + b".\r\n")
        code = await reply(reader)
        if code != 250:
            raise RuntimeError(f"end of data -> {code}")
        elapsed = time.perf_counter() - started
        writer.write(b"QUIT\r\n")
        await writer.drain()
        return elapsed
    finally:
        writer.close()


async def latencies(port, messages):
    out, failures = [], 0
    for n in range(messages):
        try:
            out.append(await send_one(port, n))
        except Exception:  # a refused or cut session counts as a failure, not a crash
            failures += 1
    return out, failures


def ms(x):
    return f"{x * 1000:.1f}"


async def idle_phase(args):
    base_rss, base_fds = rss_kib(args.pid), fds(args.pid)
    started = time.perf_counter()
    conns, failed = await open_many(args.port, args.idle)
    opened_in = time.perf_counter() - started
    samples = []
    cpu0 = cpu_s(args.pid)
    t0 = time.perf_counter()
    while True:
        now = time.perf_counter() - t0
        samples.append((now, rss_kib(args.pid), cpu_s(args.pid) - cpu0, fds(args.pid)))
        if now >= args.hold:
            break
        await asyncio.sleep(args.tick)
    # Still served, every one: a NOOP on each gets its 250.
    gate = asyncio.Semaphore(500)

    async def noop(conn):
        reader, writer = conn
        async with gate:
            try:
                writer.write(b"NOOP\r\n")
                return await asyncio.wait_for(reply(reader), 30) == 250
            except Exception:
                return False

    alive = sum(await asyncio.gather(*(noop(c) for c in conns)))
    close_all(conns)
    print(f"## {args.idle} idle SMTP connections\n")
    print(f"Opened {len(conns)} (failed {len(failed)}) in {opened_in:.1f} s from 250 loopback "
          f"source addresses; after {args.hold:g} s idle, {alive} answered a NOOP.\n")
    if failed:
        print(f"First failure: `{failed[0]!r}`\n")
    print("| t (s) | Tern RSS (MiB) | Tern CPU since open (s) | open fds |")
    print("|---:|---:|---:|---:|")
    print(f"| before | {base_rss / 1024:.1f} | – | {base_fds} |")
    for t, rss, cpu, nfd in samples:
        print(f"| {t:.0f} | {rss / 1024:.1f} | {cpu:.2f} | {nfd} |")
    first, last = samples[0], samples[-1]
    per_conn = (first[1] - base_rss) / max(1, len(conns))
    growth = (last[1] - first[1]) / max(1, len(samples) - 1)
    idle_cpu = last[2] / max(1e-9, last[0]) * 100
    print(f"\nPer connection: {per_conn:.1f} KiB of RSS. Growth per {args.tick:.0f} s idle tick: "
          f"{growth:.1f} KiB. CPU while idle: {idle_cpu:.2f} % of one core.\n")


async def slow_client(port, n, interval, stop):
    """Opens a session and sends one byte of an endless command line every `interval`."""
    try:
        reader, writer = await open_idle(port, 10_000 + n)
    except Exception:
        return False
    text = b"EHLO slowloris-" + str(n).encode() + b".example.test" + b"x" * 100_000
    i = 0
    try:
        while not stop.is_set() and i < len(text):
            writer.write(text[i:i + 1])
            await writer.drain()
            i += 1
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except asyncio.TimeoutError:
                pass
        # Still served: the line so far is cut short with CRLF and must get an answer.
        writer.write(b"\r\n")
        return await asyncio.wait_for(reply(reader), 10) in (250, 500, 501)
    except Exception:
        return False
    finally:
        writer.close()


async def slowloris_phase(args):
    before, before_failed = await latencies(args.port, args.messages)
    stop = asyncio.Event()
    slow = [asyncio.create_task(slow_client(args.port, n, args.slow_interval, stop))
            for n in range(args.slow)]
    await asyncio.sleep(args.slow_interval * 2)
    during, during_failed = await latencies(args.port, args.messages)
    stop.set()
    still_open = sum(1 for ok in await asyncio.gather(*slow) if ok)
    print(f"## Slowloris: {args.slow} clients sending a byte every {args.slow_interval:g} s\n")
    print(f"A normal client sends {args.messages} messages one after another (a session each), "
          "before and during the attack; seconds from connect to the `250` after DATA.\n")
    print("| | messages ok | failed | p50 (ms) | p99 (ms) | max (ms) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, values, failed in [("before", before, before_failed),
                                 ("during", during, during_failed)]:
        print(f"| {name} | {len(values)} | {failed} | {ms(percentile(values, 50))} | "
              f"{ms(percentile(values, 99))} | {ms(max(values) if values else float('nan'))} |")
    print(f"\n{still_open} of {args.slow} slow sessions were still open and answered when the "
          "attack ended (Tern's line limit and timeouts close such sessions on their own "
          "schedule).\n")


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--idle", type=int, default=10_000)
    p.add_argument("--hold", type=float, default=60)
    p.add_argument("--tick", type=float, default=10)
    p.add_argument("--slow", type=int, default=500)
    p.add_argument("--slow-interval", type=float, default=3)
    p.add_argument("--messages", type=int, default=200)
    args = p.parse_args()
    if args.idle:
        await idle_phase(args)
        await asyncio.sleep(2)
    if args.slow:
        await slowloris_phase(args)


if __name__ == "__main__":
    asyncio.run(main())
