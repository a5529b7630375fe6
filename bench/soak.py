#!/usr/bin/env python3
"""bench/soak.py: a long mixed load on one Tern, sampled at intervals (driven by bench/soak.sh).

SMTP senders submit messages at a steady rate, half to a local mailbox and half to a remote
domain that Tern relays to smtp-sink; an API client lists, searches, reads and deletes (keeping
the mailbox near --keep messages). Every --sample seconds one row: Tern's RSS, open
descriptors, store and WAL size, messages accepted and their p99 latency, API p99, the store's
message count and the queue's length. Rows go to stdout (markdown) and --csv as they come.
"""

import argparse
import asyncio
import http.client
import json
import os
import random
import time

from loadlib import command, percentile, reply, rss_kib

WORDS = ("harbour lantern quartz meadow falcon ember saffron glacier orbit willow cobalt "
         "thistle prairie copper lagoon summit juniper ripple basalt tundra").split()


def mib(path):
    try:
        return os.path.getsize(path) / (1024 * 1024)
    except OSError:
        return 0.0


def p99_ms(values):
    return percentile(values, 99) * 1000


class Stats:
    def __init__(self):
        self.smtp, self.api = [], []
        self.sent = self.failed = self.api_failed = self.deleted = 0
        self.last_api_error = self.last_smtp_error = ""

    def take(self):
        taken = (self.smtp, self.api, self.sent, self.failed, self.api_failed, self.deleted)
        self.smtp, self.api = [], []
        self.sent = self.failed = self.api_failed = self.deleted = 0
        return taken


def body(n):
    words = " ".join(random.choice(WORDS) for _ in range(600))
    return (f"From: soak@client.test\r\nTo: someone@tern.test\r\nSubject: soak {n} "
            f"{random.choice(WORDS)}\r\n\r\n{words}\r\n").encode()


async def sender(args, stats, stop, pace, index):
    """Sessions of up to 20 messages each, one message per token from `pace`."""
    n = index
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", args.smtp_port)
            await reply(reader)
            await command(reader, writer, b"EHLO soak.client.test", 250)
            for _ in range(20):
                await pace.get()
                if stop.is_set():
                    break
                n += args.senders
                to = b"inbox@tern.test" if random.random() >= args.remote else b"rcpt@far.test"
                started = time.perf_counter()
                await command(reader, writer, b"MAIL FROM:<soak@client.test>", 250)
                await command(reader, writer, b"RCPT TO:<" + to + b">", 250)
                await command(reader, writer, b"DATA", 354)
                writer.write(body(n) + b".\r\n")
                code = await reply(reader)
                if code != 250:
                    raise RuntimeError(f"end of data -> {code}")
                stats.smtp.append(time.perf_counter() - started)
                stats.sent += 1
            writer.write(b"QUIT\r\n")
            writer.close()
        except Exception as e:
            stats.failed += 1
            stats.last_smtp_error = str(e)
            await asyncio.sleep(0.5)


async def pacer(rate, pace, stop):
    interval = 1 / rate
    next_at = time.perf_counter()
    while not stop.is_set():
        if pace.qsize() < rate:
            pace.put_nowait(None)
        next_at += interval
        await asyncio.sleep(max(0, next_at - time.perf_counter()))


class NotFound(Exception):
    """A 404: a relayed message listed a moment ago may have been delivered and gone since."""


def http_call(port, method, path, payload=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = json.dumps(payload).encode() if payload is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        if response.status == 404:
            raise NotFound(path)
        if response.status >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status}")
        return json.loads(raw) if raw and raw[:1] in (b"{", b"[") else None
    finally:
        conn.close()


async def api_client(args, stats, stop):
    """Lists, searches and reads about five times a second; deletes the oldest beyond --keep."""
    last_delete = 0.0
    while not stop.is_set():
        started = time.perf_counter()
        try:
            listed = await asyncio.to_thread(http_call, args.http_port, "GET",
                                             "/api/v1/messages?limit=50")
            word = random.choice(WORDS)
            await asyncio.to_thread(http_call, args.http_port, "GET",
                                    f"/api/v1/search?query={word}&limit=20")
            messages = listed.get("messages") or []
            if messages:
                try:
                    await asyncio.to_thread(http_call, args.http_port, "GET",
                                            f"/api/v1/message/{messages[0]['ID']}")
                except NotFound:
                    pass
            stats.api.append(time.perf_counter() - started)
            total = listed.get("total", 0)
            if total > args.keep and time.perf_counter() - last_delete > 5:
                last_delete = time.perf_counter()
                extra = min(total - args.keep, 2000)
                oldest = await asyncio.to_thread(
                    http_call, args.http_port, "GET",
                    f"/api/v1/messages?start={total - extra}&limit={extra}")
                ids = [m["ID"] for m in oldest.get("messages") or []]
                if ids:
                    await asyncio.to_thread(http_call, args.http_port, "DELETE",
                                            "/api/v1/messages", {"IDs": ids})
                    stats.deleted += len(ids)
        except Exception as e:
            stats.api_failed += 1
            stats.last_api_error = str(e)
        await asyncio.sleep(0.2)


COLUMNS = ["t_s", "rss_mib", "fds", "store_mib", "wal_mib", "accepted", "smtp_p99_ms",
           "api_p99_ms", "messages", "queue", "deleted", "smtp_failed", "api_failed"]


async def sampler(args, stats, stop, csv):
    started = time.perf_counter()
    print("| t (s) | RSS (MiB) | fds | store (MiB) | WAL (MiB) | accepted | SMTP p99 (ms) | "
          "API p99 (ms) | messages | queue | deleted | failed SMTP/API |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    csv.write(",".join(COLUMNS) + "\n")
    while not stop.is_set():
        await asyncio.sleep(args.sample)
        smtp, api, sent, failed, api_failed, deleted = stats.take()
        try:
            total = (await asyncio.to_thread(http_call, args.http_port, "GET",
                                             "/api/v1/messages?limit=1"))["total"]
            queue = (await asyncio.to_thread(http_call, args.http_port, "GET",
                                             "/api/v1/queue?limit=1"))["Total"]
        except Exception:
            total = queue = -1
        db = os.path.join(args.store, "tern.db")
        row = [round(time.perf_counter() - started), round(rss_kib(args.pid) / 1024, 1),
               len(os.listdir(f"/proc/{args.pid}/fd")), round(mib(db), 1),
               round(mib(db + "-wal"), 1), sent, round(p99_ms(smtp), 1), round(p99_ms(api), 1),
               total, queue, deleted, failed, api_failed]
        csv.write(",".join(str(v) for v in row) + "\n")
        csv.flush()
        print("| " + " | ".join(str(v) for v in row[:11]) + f" | {failed}/{api_failed} |",
              flush=True)
        if time.perf_counter() - started >= args.secs:
            stop.set()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--smtp-port", type=int, required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--secs", type=float, default=1800)
    p.add_argument("--sample", type=float, default=30)
    p.add_argument("--rate", type=float, default=100)
    p.add_argument("--senders", type=int, default=8)
    p.add_argument("--remote", type=float, default=0.5)
    p.add_argument("--keep", type=int, default=20000)
    p.add_argument("--csv", required=True)
    args = p.parse_args()
    stats, stop = Stats(), asyncio.Event()
    pace = asyncio.Queue()
    with open(args.csv, "w") as csv:
        tasks = [asyncio.create_task(pacer(args.rate, pace, stop)),
                 asyncio.create_task(api_client(args, stats, stop))]
        tasks += [asyncio.create_task(sender(args, stats, stop, pace, i))
                  for i in range(args.senders)]
        await sampler(args, stats, stop, csv)
        for _ in range(args.senders):
            pace.put_nowait(None)
        await asyncio.wait(tasks, timeout=30)
    for kind, error in [("SMTP", stats.last_smtp_error), ("API", stats.last_api_error)]:
        if error:
            print(f"\nLast {kind} failure: `{error}`")


if __name__ == "__main__":
    asyncio.run(main())
