/* How this module was built: a JSON object written by build_ffi.py (version, source, flags). */
const char* pmi_build_info(void);
/* The compiler that compiled this module, as it names itself ("gcc 12.2.0", "clang 16.0.6"). */
const char* pmi_compiler(void);
/* The version of pymimalloc this module was built for (pymimalloc/_version.py), compared at import. */
const char* pmi_package_version(void);
