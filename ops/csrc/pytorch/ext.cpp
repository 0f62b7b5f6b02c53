// The Python module vtpack_mm._ext. It holds no functions: importing it loads this
// library, whose static initialisers register the ops under torch.ops.vtpack_mm.
#include <Python.h>

static struct PyModuleDef vtpack_mm_ext_module = {
    PyModuleDef_HEAD_INIT, "_ext", "vtpack_mm compiled ops (see torch.ops.vtpack_mm)", -1,
    nullptr};

PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&vtpack_mm_ext_module); }
