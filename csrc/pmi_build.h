/* How this module was built: a JSON object written by build_ffi.py (version, source, flags). */
const char* pmi_build_info(void);
