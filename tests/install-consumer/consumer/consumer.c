/* Opens a receiver, creates a customer, ingests one payload and checks the
 * stats count it. Usage: consumer DB_PATH PAYLOAD_FILE */
#include <loopgain/receiver.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  FILE *f = fopen(argv[2], "rb");
  if (!f) return 2;
  char body[65536];
  size_t len = fread(body, 1, sizeof body, f);
  fclose(f);

  lgr_options *o = lgr_options_create();
  lgr_options_set_db_path(o, argv[1], NULL);
  lgr_options_set_fixed_time(o, 1796083200, NULL); /* 2026-12-01T00:00Z */
  lgr_receiver *r = NULL;
  lgr_error *err = NULL;
  if (lgr_receiver_open(o, &r, &err) != LGR_OK) {
    fprintf(stderr, "open: %s\n", lgr_error_message(err));
    return 1;
  }
  lgr_options_free(o);

  char *customer = NULL, *token = NULL, auth[64], *stats = NULL;
  int ok = lgr_customer_create(r, "consumer", NULL, &customer, &token,
                               NULL) == LGR_OK;
  snprintf(auth, sizeof auth, "Bearer %s", ok ? token : "");
  ok = ok && lgr_ingest(r, auth, body, len, NULL, NULL) == LGR_OK;
  ok = ok && lgr_stats_json(r, customer, &stats, NULL, NULL) == LGR_OK;
  ok = ok && strstr(stats, "\"event_count\":1,") != NULL;
  printf("%s %s\n", lgr_version(), ok ? "ok" : "FAILED");

  lgr_string_free(stats);
  lgr_string_free(customer);
  lgr_string_free(token);
  lgr_receiver_free(r);
  return ok ? 0 : 1;
}
