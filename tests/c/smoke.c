/* Runs one batch end to end through the C ABI: create, consume, render, free.
 * The batch (one CLIENT span of service "a" and its SERVER span in service "b")
 * is passed in as a file of OTLP protobuf bytes written by the Rust test. */
#include "servicemap.h"
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
  unsigned char *buf = malloc((size_t)n);
  CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n, "short read");
  fclose(f);
  *len = (size_t)n;
  return buf;
}

int main(int argc, char **argv) {
  CHECK(argc == 2, "usage: smoke BATCH_FILE");
  CHECK(sm_version_number() == SERVICEMAP_VERSION_NUMBER, "header and library versions differ");

  /* A bad config is rejected with a message naming the key. */
  sm_engine *engine = (sm_engine *)1;
  sm_buf msg = {0};
  const char *bad = "{\"max_items\": \"many\"}";
  CHECK(sm_engine_new((const uint8_t *)bad, strlen(bad), &engine, &msg) == SM_STATUS_INVALID_CONFIG, "bad config accepted");
  CHECK(engine == NULL, "engine_out not cleared on error");
  CHECK(msg.ptr != NULL && strstr((const char *)msg.ptr, "max_items") != NULL, "message does not name the key");
  sm_buf_free(msg);

  const char *cfg = "{\"initial_zero\": false}";
  CHECK(sm_engine_new((const uint8_t *)cfg, strlen(cfg), &engine, NULL) == SM_STATUS_OK, "engine_new failed");

  size_t len = 0;
  unsigned char *batch = read_file(argv[1], &len);
  const uint64_t now = 1767225600ull * 1000000000ull;
  CHECK(sm_engine_consume(engine, batch, len, now, NULL) == SM_STATUS_OK, "consume failed");

  /* A truncated batch is rejected whole, with a message. */
  msg = (sm_buf){0};
  CHECK(sm_engine_consume(engine, batch, len - 3, now, &msg) == SM_STATUS_INVALID_INPUT, "truncated batch accepted");
  CHECK(msg.len > 0, "no message for a rejected batch");
  sm_buf_free(msg);
  free(batch);

  /* Null and empty inputs are safe. */
  CHECK(sm_engine_consume(engine, NULL, 0, now, NULL) == SM_STATUS_OK, "empty batch rejected");
  CHECK(sm_engine_consume(NULL, NULL, 0, now, NULL) == SM_STATUS_NULL_ARGUMENT, "null engine accepted");
  CHECK(sm_engine_render(engine, 99, now, &msg, NULL) == SM_STATUS_INVALID_ARGUMENT, "unknown format accepted");

  sm_buf out = {0};
  CHECK(sm_engine_render(engine, SM_FORMAT_PROMETHEUS, now, &out, NULL) == SM_STATUS_OK, "render failed");
  fwrite(out.ptr, 1, out.len, stdout);
  sm_buf_free(out);

  /* The keys the engine reads: service.name on resources, peer.service on spans. */
  sm_buf keys = {0};
  CHECK(sm_engine_wanted_keys(engine, &keys, NULL) == SM_STATUS_OK, "wanted_keys failed");
  CHECK(keys.ptr != NULL, "no wanted keys");
  char *text = malloc(keys.len + 1);
  memcpy(text, keys.ptr, keys.len);
  text[keys.len] = 0;
  sm_buf_free(keys);
  CHECK(strncmp(text, "{\"resource\":[\"service.name\",", 28) == 0, "wanted keys do not start with the resource's service.name: %s", text);
  CHECK(strstr(text, "\"span\":[") != NULL && strstr(text, "\"peer.service\"") != NULL, "peer.service is not wanted: %s", text);
  free(text);
  CHECK(sm_engine_wanted_keys(engine, NULL, NULL) == SM_STATUS_NULL_ARGUMENT, "null out accepted");
  CHECK(sm_engine_wanted_keys(NULL, &keys, NULL) == SM_STATUS_NULL_ARGUMENT, "null engine accepted");

  CHECK(sm_engine_expire(engine, now, NULL) == SM_STATUS_OK, "expire failed");
  CHECK(sm_engine_flush(engine, now, NULL) == SM_STATUS_OK, "flush failed");
  sm_engine_free(engine);
  sm_engine_free(NULL);
  return 0;
}
