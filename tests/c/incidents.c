/* Feeds an incident through the C ABI and prints the answers to impact
 * queries, one JSON document a line. The plan, written by the Rust test
 * (tests/incidents.rs), holds one step a line:
 *   batch NOW_UNIX_NANO FILE   consume the OTLP protobuf batch in FILE at NOW,
 *                              then expire at NOW
 *   ask NOW_UNIX_NANO SERVICE  expire everything still waiting at NOW, then
 *                              print {"query":"impact","service":SERVICE}'s answer
 * Service names in the plan need no JSON escaping. */
#include "servicemap.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } } while (0)

static unsigned char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  CHECK(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)n + 1);
  CHECK(buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n, "short read of %s", path);
  fclose(f);
  *len = (size_t)n;
  return buf;
}

int main(int argc, char **argv) {
  CHECK(argc == 2, "usage: incidents PLAN");
  sm_engine *engine = NULL;
  CHECK(sm_engine_new((const uint8_t *)"{}", 2, &engine, NULL) == SM_STATUS_OK, "engine_new failed");
  FILE *plan = fopen(argv[1], "r");
  CHECK(plan != NULL, "cannot open %s", argv[1]);
  char verb[16], arg[4096];
  uint64_t now = 0;
  while (fscanf(plan, "%15s %" SCNu64 " %4095s", verb, &now, arg) == 3) {
    sm_buf msg = {0};
    if (strcmp(verb, "batch") == 0) {
      size_t len = 0;
      unsigned char *batch = read_file(arg, &len);
      CHECK(sm_engine_consume(engine, batch, len, now, &msg) == SM_STATUS_OK, "consume %s: %.*s", arg, (int)msg.len, (const char *)msg.ptr);
      free(batch);
      CHECK(sm_engine_expire(engine, now, NULL) == SM_STATUS_OK, "expire failed");
    } else if (strcmp(verb, "ask") == 0) {
      CHECK(sm_engine_flush(engine, now, NULL) == SM_STATUS_OK, "flush failed");
      char request[4200];
      int n = snprintf(request, sizeof request, "{\"query\":\"impact\",\"service\":\"%s\"}", arg);
      sm_buf out = {0};
      CHECK(sm_engine_query(engine, (const uint8_t *)request, (size_t)n, now, &out, &msg) == SM_STATUS_OK, "query: %.*s", (int)msg.len, (const char *)msg.ptr);
      fwrite(out.ptr, 1, out.len, stdout);
      fputc('\n', stdout);
      sm_buf_free(out);
    } else {
      CHECK(0, "unknown step %s", verb);
    }
  }
  fclose(plan);
  sm_engine_free(engine);
  return 0;
}
