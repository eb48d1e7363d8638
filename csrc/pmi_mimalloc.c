/* All of mimalloc as one translation unit, through upstream's own single-unit build (src/static.c).
 * build_ffi.py puts the verified mimalloc tree's src/ and include/ on the include path; setuptools only
 * accepts sources inside the project, so this file is the project-relative handle on that tree. */
#include "static.c"
