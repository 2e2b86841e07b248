/*
 * callback_ext: a CPython extension module whose C functions sit between Python frames, for pybpfprof's
 * mixed Python/native stack tests. Builds against the headers of CPython 2.7 and 3.6 to 3.15 and uses only
 * functions of the limited API (PyObject_CallNoArgs behind a version guard: it is public from 3.9 on; 2.7's module
 * initialization behind another).
 *
 * callback_workload.py runs, while it burns CPU:
 *
 *     Python caller()  ->  ext_outer_native  ->  Python callback()  ->  ext_inner_native
 *
 * NativeFixtures.buildCallbackExtension compiles this file with -O2 -fomit-frame-pointer, so the C frames
 * have no frame pointer: a stack of them unwinds only through .eh_frame. Both functions are kept as written:
 *   - noinline (and, under GCC, noipa: no clone such as ext_inner_native.isra.0 with another name, no
 *     identical-code folding), so each is one symbol of its own in the stack;
 *   - ext_outer_native does work after each call of the callback (checks and adds the result, drops the
 *     reference), so the call is no tail call: its frame and its return address stay on the stack;
 *   - ext_inner_native's loop passes its accumulator through an empty asm, so -O2 can neither drop the loop
 *     nor compute its result at compile time; all of the burn is inside ext_inner_native itself.
 * They are not static, so that they are in .dynsym as well as .symtab and a symbolizer that reads either
 * finds them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if defined(__GNUC__) && !defined(__clang__)
#define FIXTURE_KEEP __attribute__((noinline, noipa))
#else
#define FIXTURE_KEEP __attribute__((noinline))
#endif

PyObject *ext_outer_native(PyObject *self, PyObject *args);
PyObject *ext_inner_native(PyObject *self, PyObject *args);

/* outer_native(callback, n): calls callback() n times; returns the sum of its results (each must be an int,
 * taken modulo 2**64). */
FIXTURE_KEEP PyObject *ext_outer_native(PyObject *self, PyObject *args)
{
    PyObject *callback;
    long count;
    unsigned long long total = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "Ol:outer_native", &callback, &count)) {
        return NULL;
    }
    if (!PyCallable_Check(callback)) {
        PyErr_SetString(PyExc_TypeError, "outer_native: callback must be callable");
        return NULL;
    }
    for (long index = 0; index < count; index++) {
#if PY_VERSION_HEX >= 0x03090000
        PyObject *result = PyObject_CallNoArgs(callback);
#else
        PyObject *result = PyObject_CallObject(callback, NULL);
#endif
        if (result == NULL) {
            return NULL;
        }
        if (!PyLong_Check(result)) {
            Py_DECREF(result);
            PyErr_SetString(PyExc_TypeError, "outer_native: callback must return an int");
            return NULL;
        }
        unsigned long long value = PyLong_AsUnsignedLongLongMask(result);
        Py_DECREF(result);
        if (value == (unsigned long long)-1 && PyErr_Occurred()) {
            return NULL;
        }
        total += value;
    }
    return PyLong_FromUnsignedLongLong(total);
}

/* inner_native(iterations): burns CPU in iterations rounds of integer arithmetic; returns the result. */
FIXTURE_KEEP PyObject *ext_inner_native(PyObject *self, PyObject *args)
{
    long iterations;
    (void)self;
    if (!PyArg_ParseTuple(args, "l:inner_native", &iterations)) {
        return NULL;
    }
    unsigned long long accumulator = 0x9e3779b97f4a7c15ULL;
    for (long index = 0; index < iterations; index++) {
        accumulator = accumulator * 6364136223846793005ULL + (unsigned long long)index;
        accumulator ^= accumulator >> 29;
        /* An empty asm that may read and change the accumulator: the loop stays, one round at a time. */
        __asm__ volatile("" : "+r"(accumulator));
    }
    /* Below 2**62, so it is a small int on every version. */
    return PyLong_FromUnsignedLongLong(accumulator >> 2);
}

static PyMethodDef callback_ext_methods[] = {
    {"outer_native", ext_outer_native, METH_VARARGS, "outer_native(callback, n): calls callback() n times."},
    {"inner_native", ext_inner_native, METH_VARARGS, "inner_native(iterations): burns CPU in C."},
    {NULL, NULL, 0, NULL},
};

#if PY_MAJOR_VERSION == 2
PyMODINIT_FUNC initcallback_ext(void)
{
    Py_InitModule3("callback_ext", callback_ext_methods,
                   "C functions between Python frames, for pybpfprof's native stack tests.");
}
#else
static struct PyModuleDef callback_ext_module = {
    PyModuleDef_HEAD_INIT,
    "callback_ext",
    "C functions between Python frames, for pybpfprof's native stack tests.",
    -1,
    callback_ext_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit_callback_ext(void)
{
    return PyModule_Create(&callback_ext_module);
}
#endif
