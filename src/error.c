/* The error table: one X-macro list (error.h) expands to the codes and their texts. */
#include "parley/error.h"

#include <string.h>

const char *pl_strerror(int err) {
  switch (err) {
#define PL_ERR_TEXT(name, code, text) \
  case code:                          \
    return text;
    PL_ERRNO_MAP(PL_ERR_TEXT)
#undef PL_ERR_TEXT
    case 0:
      return "success";
    default:
      break;
  }
  if (err < 0 && err > -4096)
    return strerror(-err);
  return "unknown error";
}

const char *pl_errname(int err) {
  switch (err) {
#define PL_ERR_NAME(name, code, text) \
  case code:                          \
    return "PL_E" #name;
    PL_ERRNO_MAP(PL_ERR_NAME)
#undef PL_ERR_NAME
    case 0:
      return "OK";
    default:
      return "ERRNO";
  }
}
