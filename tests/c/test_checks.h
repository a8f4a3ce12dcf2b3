/*
 * The checks of the C API tests: each CHECK counts, a failed one prints
 * where and what and the test goes on, and checks_exit_code() prints the
 * tally and gives main()'s exit status. The counters are atomic, so checks
 * may run on any thread (callbacks of the async test run on the library's
 * writer thread). Header-only (static), C11.
 */
#ifndef LGR_TESTS_C_TEST_CHECKS_H
#define LGR_TESTS_C_TEST_CHECKS_H

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static atomic_int g_checks = 0;
static atomic_int g_failures = 0;

#define CHECK(cond)                                                  \
  do {                                                               \
    ++g_checks;                                                      \
    if (!(cond)) {                                                   \
      ++g_failures;                                                  \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
              #cond);                                                \
    }                                                                \
  } while (0)

#define CHECK_EQ_INT(a, b)                                             \
  do {                                                                 \
    long long va_ = (long long)(a), vb_ = (long long)(b);              \
    ++g_checks;                                                        \
    if (va_ != vb_) {                                                  \
      ++g_failures;                                                    \
      fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, \
              __LINE__, #a, #b, va_, vb_);                             \
    }                                                                  \
  } while (0)

#define CHECK_EQ_STR(a, b)                                               \
  do {                                                                   \
    const char *sa_ = (a), *sb_ = (b);                                   \
    ++g_checks;                                                          \
    if (sa_ == NULL || sb_ == NULL || strcmp(sa_, sb_) != 0) {           \
      ++g_failures;                                                      \
      fprintf(stderr, "%s:%d: %s == %s failed:\n  \"%s\"\n  \"%s\"\n",   \
              __FILE__, __LINE__, #a, #b, sa_ ? sa_ : "(null)",          \
              sb_ ? sb_ : "(null)");                                     \
    }                                                                    \
  } while (0)

/* Prints "N passed, M failed"; 0 when nothing failed, else 1. */
static int checks_exit_code(void) {
  const int checks = atomic_load(&g_checks);
  const int failures = atomic_load(&g_failures);
  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures == 0 ? 0 : 1;
}

#endif /* LGR_TESTS_C_TEST_CHECKS_H */
