#include "tokens.hpp"

#include <sodium.h>

#include <array>
#include <mutex>

namespace lgr::tokens {
namespace {

constexpr std::size_t kCustomerIdBytes = 8;
constexpr std::size_t kTokenBytes = 24;

// sodium_init() is documented as safe to call repeatedly, but we still
// funnel it through call_once so that its result is computed once and every
// thread sees the same answer.
int sodium_status() {
  static std::once_flag once;
  static int status = -1;
  std::call_once(once, [] { status = sodium_init(); });
  return status;
}

Error crypto_unavailable() {
  return make_error(ErrorCode::internal_error, "",
                    "libsodium could not be initialised");
}

std::string to_hex(const unsigned char* bytes, std::size_t size) {
  // sodium_bin2hex writes 2 * size digits and a terminating NUL.
  std::string hex(size * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), bytes, size);
  hex.pop_back();
  return hex;
}

bool is_base64url_char(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_';
}

}  // namespace

Status init() {
  if (sodium_status() < 0) return crypto_unavailable();
  return {};
}

Result<std::string> new_customer_id() {
  if (sodium_status() < 0) return crypto_unavailable();

  std::array<unsigned char, kCustomerIdBytes> bytes{};
  randombytes_buf(bytes.data(), bytes.size());
  std::string id(kCustomerIdPrefix);
  id += to_hex(bytes.data(), bytes.size());
  sodium_memzero(bytes.data(), bytes.size());
  return id;
}

Result<std::string> new_token() {
  if (sodium_status() < 0) return crypto_unavailable();

  constexpr int kVariant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  constexpr std::size_t kEncoded =
      sodium_base64_ENCODED_LEN(kTokenBytes, kVariant);  // includes the NUL
  std::array<unsigned char, kTokenBytes> bytes{};
  std::array<char, kEncoded> encoded{};
  randombytes_buf(bytes.data(), bytes.size());
  sodium_bin2base64(encoded.data(), encoded.size(), bytes.data(), bytes.size(),
                    kVariant);

  std::string token(kTokenPrefix);
  token.append(encoded.data(), kEncoded - 1);
  sodium_memzero(bytes.data(), bytes.size());
  sodium_memzero(encoded.data(), encoded.size());
  return token;
}

Result<std::string> hash_token(std::string_view token) {
  if (sodium_status() < 0) return crypto_unavailable();

  // An empty string_view may carry a null pointer; hash from a valid one.
  static constexpr unsigned char kNothing = 0;
  const auto* bytes =
      token.empty() ? &kNothing
                    : reinterpret_cast<const unsigned char*>(token.data());
  std::array<unsigned char, crypto_hash_sha256_BYTES> digest{};
  crypto_hash_sha256(digest.data(), bytes, token.size());
  return to_hex(digest.data(), digest.size());
}

bool has_token_shape(std::string_view token) noexcept {
  if (token.size() != kTokenLength) return false;
  if (token.substr(0, kTokenPrefix.size()) != kTokenPrefix) return false;
  for (char c : token.substr(kTokenPrefix.size())) {
    if (!is_base64url_char(c)) return false;
  }
  return true;
}

}  // namespace lgr::tokens
