/*
 * read_file() for the C test programs: a whole file in a NUL-terminated
 * buffer the caller frees. Header-only (static), for C11 tests and hosts
 * in tests/.
 */
#ifndef LGR_TESTS_C_TEST_FILE_H
#define LGR_TESTS_C_TEST_FILE_H

#include <stdio.h>
#include <stdlib.h>

/* NULL when the file cannot be read; *len then stays untouched. */
static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = size >= 0 ? malloc((size_t)size + 1) : NULL;
  if (buf && fread(buf, 1, (size_t)size, f) != (size_t)size) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  if (buf) {
    buf[size] = '\0';
    *len = (size_t)size;
  }
  return buf;
}

#endif /* LGR_TESTS_C_TEST_FILE_H */
