/* README example: embedding the receiver in a C host. Usage: embed DB */
#include <loopgain/receiver.h>
#include <stdio.h>

int main(int argc, char **argv) {
  lgr_options *opts = lgr_options_create();
  lgr_options_set_db_path(opts, argc > 1 ? argv[1] : "telemetry.db", NULL);
  lgr_receiver *rx = NULL;
  lgr_error *err = NULL;
  if (lgr_receiver_open(opts, &rx, &err) != LGR_OK) {
    fprintf(stderr, "open: %s\n", lgr_error_message(err));
    return 1;
  }
  lgr_options_free(opts);

  /* For each HTTP request your server receives: */
  lgr_http_request req;
  lgr_http_request_init(&req);
  req.method = "GET";
  req.path = "/health";
  lgr_http_response *res = NULL;
  lgr_handle_request(rx, &req, &res);
  size_t len;
  const char *body = lgr_http_response_body(res, &len);
  printf("%d %.*s\n", lgr_http_response_status(res), (int)len, body);
  lgr_http_response_free(res);

  lgr_receiver_free(rx); /* commits and closes */
  return 0;
}
