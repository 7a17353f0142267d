"""Submits N no-op Celery tasks with task.delay() from P processes x T threads and prints one
JSON line like postload.c: {"requests", "ok", "seconds", "p50_ms", "p99_ms", "max_ms", "t0"}.
Usage: REDIS_URL=redis://127.0.0.1:PORT python3 submit.py N PROCESSES THREADS"""
import json
import multiprocessing as mp
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def client(count, lat, errors):
    from celery_app import noop
    for _ in range(count):
        t = time.perf_counter()
        try:
            noop.delay()
        except Exception as e:  # counted, not fatal: the table says how many were refused
            errors.append(repr(e))
            continue
        lat.append(time.perf_counter() - t)


def process_main(counts, start, q):
    import celery_app  # noqa: F401 (connect before the start signal)
    lat, errors = [], []
    threads = [threading.Thread(target=client, args=(c, lat, errors)) for c in counts]
    start.wait()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    q.put((lat, errors))


def split(n, parts):
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def main():
    n, procs, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    per_proc = split(n, procs)
    q, start = mp.Queue(), mp.Event()
    ps = [mp.Process(target=process_main, args=(split(c, threads), start, q)) for c in per_proc]
    for p in ps:
        p.start()
    time.sleep(1.0)  # let every process import Celery before the clock starts
    t0, wall0 = time.perf_counter(), time.time()
    start.set()
    lat, errors = [], []
    for _ in ps:
        l, e = q.get()
        lat += l
        errors += e
    secs = time.perf_counter() - t0
    for p in ps:
        p.join()
    lat.sort()
    ms = lambda q_: round(lat[min(len(lat) - 1, int(len(lat) * q_))] * 1000, 2) if lat else None
    print(json.dumps({"requests": n, "ok": len(lat), "seconds": round(secs, 3),
                      "p50_ms": ms(0.5), "p99_ms": ms(0.99), "max_ms": ms(1.0), "t0": wall0,
                      "errors": errors[:3]}))


if __name__ == "__main__":
    main()
