/* The library's version, compiled in from the VERSION file (the Makefile passes it as
 * ROOST_VERSION); the same string names the shared library's soname and roost.pc. */
#include "roost/roost.h"

#ifndef ROOST_VERSION
#error "ROOST_VERSION is set by the Makefile from the VERSION file"
#endif

const char *roost_version(void)
{
    return ROOST_VERSION;
}
