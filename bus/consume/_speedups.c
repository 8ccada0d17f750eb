/* bus.consume._speedups: C for the consume loop's per-event steps that Python cannot do without
 * raising an exception.
 *
 * - start(fn, arg, done, resume) -> object
 *   Calls fn(arg). When that returns a coroutine, runs it to its first suspension, as
 *   coro.send(None) does, but through PyIter_Send, which reports a coroutine that returned
 *   without raising StopIteration (building and catching that exception costs more than the
 *   rest of a no-op handler's call). Returns `done` when the coroutine finished, resume(coro,
 *   yielded) when it suspended, and fn's result as it is when that is no coroutine. Whatever fn
 *   or the coroutine raised is raised. bus/consume/_workers.py holds the Python version
 *   (bus/consume/_native.py falls back to it); tests/test_bus/test_speedups.py runs both.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
start(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "start(fn, arg, done, resume) takes 4 arguments");
        return NULL;
    }
    PyObject *awaitable = PyObject_CallOneArg(args[0], args[1]);
    if (awaitable == NULL || !PyCoro_CheckExact(awaitable)) {
        return awaitable;
    }
    PyObject *yielded = NULL;
    PySendResult sent = PyIter_Send(awaitable, Py_None, &yielded);
    if (sent == PYGEN_RETURN) {
        Py_DECREF(yielded);
        Py_DECREF(awaitable);
        return Py_NewRef(args[2]);
    }
    if (sent == PYGEN_ERROR) {
        Py_DECREF(awaitable);
        return NULL;
    }
    PyObject *pair[2] = {awaitable, yielded};
    PyObject *resumed = PyObject_Vectorcall(args[3], pair, 2, NULL);
    Py_DECREF(awaitable);
    Py_DECREF(yielded);
    return resumed;
}

static PyMethodDef methods[] = {
    {"start", (PyCFunction)(void (*)(void))start, METH_FASTCALL,
     "start(fn, arg, done, resume): call fn(arg) and run its coroutine to its first suspension."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "bus.consume._speedups", "C for the consume loop's per-event steps.", 0, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&module);
}
