// Python entry point of gis._C. Importing the module runs the static TORCH_LIBRARY
// registrations of the other translation units; the ops are reached as torch.ops.gis.*.
// Only the setup.py build compiles this file (the CMake/libtorch build needs no Python).
#include <Python.h>

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",  // name
      "gis compiled operators: reach them through torch.ops.gis or gis.ops.",
      -1,  // no per-module state
      nullptr,
  };
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
#ifdef WITH_CUDA
  const long with_cuda = 1;
#else
  const long with_cuda = 0;
#endif
  // gis._C.WITH_CUDA: whether CUDA kernels were compiled in.
  if (PyModule_AddIntConstant(module, "WITH_CUDA", with_cuda) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
}
