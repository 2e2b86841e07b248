"""A small demo workload for pybpfprof: a tokenizer and parser, an HTML renderer, and a background
thread compressing data with zlib, for about three seconds."""
import threading
import time
import zlib


def tokenize(text):
    return [word.strip(".,") for word in text.split()]


def parse(lines):
    return [tokenize(line) for line in lines]


def render(rows):
    out = []
    for _ in range(3):
        out = ["<td>" + "</td><td>".join(row) + "</td>" for row in rows]
    return out


def handle_request(lines):
    rows = parse(lines)
    return render(rows)


def compress_forever(stop):
    data = bytes(range(256)) * 4096
    while not stop.is_set():
        zlib.compress(data, 6)


def main():
    lines = ["The quick brown fox, jumps over the lazy dog."] * 2000
    stop = threading.Event()
    worker = threading.Thread(target=compress_forever, args=(stop,), name="compressor")
    worker.start()
    end = time.monotonic() + 3
    while time.monotonic() < end:
        handle_request(lines)
    stop.set()
    worker.join()


if __name__ == "__main__":
    main()
