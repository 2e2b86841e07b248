/* A Python extension for pybpfprof's container tests: spin(rounds) spends its time in BURN_NAME, a static function,
 * so that once the library is stripped only its separate debug file names it. The decoy build of the test renames
 * that function (-DBURN_NAME=hostdecoy_native_burn, a name of the same length) and keeps everything else, the
 * build ID included: a profiler that reads the decoy's debug file shows the decoy's name. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifndef BURN_NAME
#define BURN_NAME container_native_burn
#endif

__attribute__((noinline)) static unsigned long BURN_NAME(unsigned long rounds)
{
    unsigned long value = 1;
    for (unsigned long round = 0; round < rounds; round++) {
        value = value * 6364136223846793005UL + round;
        __asm__ volatile("" : "+r"(value));
    }
    return value;
}

static PyObject *spin(PyObject *self, PyObject *args)
{
    unsigned long rounds;
    if (!PyArg_ParseTuple(args, "k", &rounds))
        return NULL;
    return PyLong_FromUnsignedLong(BURN_NAME(rounds));
}

static PyMethodDef methods[] = {
    { "spin", spin, METH_VARARGS, "Spins for `rounds` rounds in a static C function." },
    { NULL, NULL, 0, NULL },
};

static struct PyModuleDef module = { PyModuleDef_HEAD_INIT, "hotext", NULL, -1, methods };

PyMODINIT_FUNC PyInit_hotext(void)
{
    return PyModule_Create(&module);
}
