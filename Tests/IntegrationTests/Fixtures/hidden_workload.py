"""Calls a stripped library's exported hidden_spin(), whose time is spent in the static hidden_hot_loop(): the frame
only a debug file names. Usage: hidden_workload.py LIBRARY. Prints "ready" once the library is loaded and called, then
runs until killed."""
import ctypes
import sys

library = ctypes.CDLL(sys.argv[1])
library.hidden_spin.argtypes = [ctypes.c_ulong]
library.hidden_spin(1000)
print("ready")
sys.stdout.flush()
while True:
    library.hidden_spin(200000)
