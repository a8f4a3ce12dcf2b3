// README example: embedding the receiver in a C++ gateway.
#include <loopgain/receiver.hpp>

#include <iostream>

int main(int argc, char** argv) {
  loopgain::Receiver rx({.db_path = argc > 1 ? argv[1] : "telemetry.db"});
  auto [customer, token] = rx.create_customer("acme");

  // For each HTTP request your gateway receives:
  auto res = rx.handle({.method = "POST", .path = "/v1/aggregate",
                        .authorization = "Bearer " + token,
                        .body = R"({"schema_version": 4})"});
  std::cout << res.status << " " << res.body << "\n";  // 400: incomplete
  std::cout << rx.stats_json(customer) << "\n";
}
