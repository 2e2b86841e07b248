"""Spins in Python until the file TRIGGER exists, then loads the stripped library LIBRARY (mapped only now, while
being recorded) and spends its time in its hidden_spin(). Usage: late_library_workload.py LIBRARY TRIGGER. Prints
"ready" at the start and "loaded" once the library is mapped; runs until killed."""
import ctypes
import os
import sys

print("ready")
sys.stdout.flush()
total = 0
while not os.path.exists(sys.argv[2]):
    for number in range(10000):
        total += number
library = ctypes.CDLL(sys.argv[1])
library.hidden_spin.argtypes = [ctypes.c_ulong]
print("loaded")
sys.stdout.flush()
while True:
    library.hidden_spin(200000)
