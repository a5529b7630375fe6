#!/usr/bin/env python3
"""Catcher benchmark: load a running Tern with a varied corpus, then time the API.

Measures, against one running `tern serve` (stdlib only, loopback only):
  1. ingest: N messages of random words from a fixed vocabulary over S SMTP sessions
     (the full-text index is maintained during this);
  2. API latency with the store full: first page of /api/v1/messages, several searches
     (median and max of R runs each, measured client-side with a fresh request each time);
  3. wait wake-up: a /api/v1/wait request is parked, a matching message is sent over SMTP, and
     the delay between the SMTP 250 reply and the HTTP response is recorded (T trials).
Prints one JSON object on stdout.

Usage: catcher.py --smtp 127.0.0.1:1025 --http 127.0.0.1:8025 [--messages 100000] [--sessions 8]
"""

import argparse
import http.client
import json
import random
import smtplib
import socket
import statistics
import threading
import time
import urllib.parse

VOCABULARY_SIZE = 5000
SEED = 20261122


def vocabulary():
    rng = random.Random(SEED)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = set()
    while len(words) < VOCABULARY_SIZE:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(4, 10))))
    return sorted(words)


def message(rng, words, n):
    sender = f"user{rng.randint(0, 199)}@sender{rng.randint(0, 9)}.example"
    rcpt = f"inbox{rng.randint(0, 49)}@tern.test"
    subject = " ".join(rng.choice(words) for _ in range(rng.randint(3, 8)))
    lines = []
    for _ in range(rng.randint(10, 40)):
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(5, 12))))
    body = "\r\n".join(lines)
    raw = (
        f"From: Sender {n} <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <bench-{n}@tern.test>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    )
    return sender, rcpt, raw.encode()


def load(smtp, total, sessions, words):
    host, port = smtp.rsplit(":", 1)
    counter = iter(range(total))
    lock = threading.Lock()
    errors = []

    def worker(k):
        rng = random.Random(SEED + k)
        client = smtplib.SMTP(host, int(port), timeout=60)
        try:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    break
                sender, rcpt, raw = message(rng, words, n)
                client.sendmail(sender, [rcpt], raw)
        except Exception as e:  # reported, not hidden
            errors.append(repr(e))
        finally:
            try:
                client.quit()
            except Exception:
                pass

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {"messages": total, "seconds": round(elapsed, 3), "per_second": round(total / elapsed, 1), "errors": errors[:5]}


def timed_get(http_addr, path):
    host, port = http_addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"GET {path} -> {response.status} {body[:200]!r}")
    return elapsed * 1000, json.loads(body)


def latencies(http_addr, words, runs):
    rng = random.Random(SEED + 99)
    _, first = timed_get(http_addr, "/api/v1/messages?limit=1")
    deep = first["total"] // 2  # a page halfway down the store
    rare = words[rng.randrange(len(words))]
    queries = {
        "first page /api/v1/messages": "/api/v1/messages?limit=50",
        "page 100 (start=5000)": "/api/v1/messages?start=5000&limit=50",
        f"search word ({rare})": "/api/v1/search?query=" + urllib.parse.quote(rare),
        "search two words": "/api/v1/search?query=" + urllib.parse.quote(f"{words[1]} {words[2]}"),
        "search phrase": "/api/v1/search?query=" + urllib.parse.quote(f'"{words[3]} {words[4]}"'),
        "search from:": "/api/v1/search?query=" + urllib.parse.quote("from:user7@sender3"),
        "search inbox:": "/api/v1/search?query=" + urllib.parse.quote("inbox:inbox7@tern.test"),
        "search is:unread": "/api/v1/search?query=is:unread",
        "search word -negation": "/api/v1/search?query=" + urllib.parse.quote(f"{words[5]} -{words[6]}"),
        # Small and empty answers, and searches that match every message.
        "search word, no match": "/api/v1/search?query=zzzzqqq",
        "search subject:, no match": "/api/v1/search?query=" + urllib.parse.quote("subject:zzzq"),
        "search subject:, one word": "/api/v1/search?query=" + urllib.parse.quote(f"subject:{words[7]}"),
        "search word matching all": "/api/v1/search?query=tern",
        "search from: matching all": "/api/v1/search?query=" + urllib.parse.quote("from:sender"),
        f"deep page (start={deep})": f"/api/v1/messages?start={deep}&limit=50",
    }
    out = {}
    for name, path in queries.items():
        samples = []
        matches = None
        for _ in range(runs):
            ms, body = timed_get(http_addr, path)
            samples.append(ms)
            matches = body.get("messages_count")
        out[name] = {"median_ms": round(statistics.median(samples), 2), "max_ms": round(max(samples), 2), "matches": matches}
    return out


def wake_ups(smtp, http_addr, trials):
    host, port = smtp.rsplit(":", 1)
    hhost, hport = http_addr.rsplit(":", 1)
    delays = []
    for i in range(trials):
        token = f"wakeup{i}x{random.randrange(10**9)}"
        result = {}

        def waiter():
            conn = http.client.HTTPConnection(hhost, int(hport), timeout=60)
            conn.request("GET", "/api/v1/wait?timeout=30s&query=" + urllib.parse.quote(token))
            response = conn.getresponse()
            response.read()
            result["at"] = time.perf_counter()
            result["status"] = response.status

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.2)  # the wait is parked on the server
        client = smtplib.SMTP(host, int(port), timeout=30)
        client.ehlo("bench")
        client.mail("w@tern.test")
        client.rcpt("w@tern.test")
        code, _ = client.data(f"Subject: {token}\r\n\r\nwake\r\n".encode())
        acked = time.perf_counter()
        client.quit()
        t.join()
        if code != 250 or result.get("status") != 200:
            raise RuntimeError(f"wake-up trial failed: smtp {code}, http {result.get('status')}")
        delays.append((result["at"] - acked) * 1000)
    return {
        "trials": trials,
        "median_ms_after_250": round(statistics.median(delays), 2),
        "max_ms_after_250": round(max(delays), 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smtp", required=True)
    parser.add_argument("--http", required=True)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    words = vocabulary()
    report = {}
    if not args.skip_load:
        report["ingest"] = load(args.smtp, args.messages, args.sessions, words)
    report["api"] = latencies(args.http, words, args.runs)
    report["wait"] = wake_ups(args.smtp, args.http, args.trials)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
