// README example: embedding the receiver in a C++ gateway.
#include <loopgain/receiver.hpp>

#include <iostream>

int main(int argc, char** argv) {
  loopgain::Options options;
  options.db_path = argc > 1 ? argv[1] : "telemetry.db";
  loopgain::Receiver rx(options);
  auto [customer, token] = rx.create_customer("acme");

  loopgain::Request req;  // for each HTTP request your gateway receives
  req.method = "POST";
  req.path = "/v1/aggregate";
  req.authorization = "Bearer " + token;
  req.body = R"({"schema_version": 4})";
  auto res = rx.handle(req);  // write res.status, res.headers, res.body back
  std::cout << res.status << " " << res.body << "\n";  // 400: incomplete
  std::cout << rx.stats_json(customer) << "\n";
}
