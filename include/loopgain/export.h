/*
 * LGR_EXPORT marks the functions of the C API. The library is built with
 * hidden visibility, so only what carries this mark is exported from the
 * shared object. Consumers of the static library define nothing.
 */
#ifndef LOOPGAIN_EXPORT_H
#define LOOPGAIN_EXPORT_H

#if defined(LGR_BUILDING_LIBRARY) && (defined(__GNUC__) || defined(__clang__))
#define LGR_EXPORT __attribute__((visibility("default")))
#else
#define LGR_EXPORT
#endif

#endif /* LOOPGAIN_EXPORT_H */
