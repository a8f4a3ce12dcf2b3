// Customer ids, bearer tokens and token hashes.
//
// Every random value comes from libsodium's CSPRNG. A customer id is
// "cust_" followed by 16 lowercase hex digits (8 random bytes); a bearer
// token is "lgk_" followed by 32 base64url characters without padding (24
// random bytes, 192 bits). Only the SHA-256 of a token, as 64 lowercase hex
// digits, is ever stored.
//
// Parsing an Authorization header ("Bearer <token>") is not done here; the
// receiver extracts the token and the store hashes whatever it is given.
//
// Thread safety: every function may be called from any thread at once.
// libsodium is initialised on first use, exactly once; if that fails, every
// function returns ErrorCode::internal_error.
#pragma once

#include "error.hpp"

#include <cstddef>
#include <string>
#include <string_view>

namespace lgr::tokens {

inline constexpr std::string_view kCustomerIdPrefix = "cust_";
inline constexpr std::size_t kCustomerIdLength = 5 + 16;
inline constexpr std::string_view kTokenPrefix = "lgk_";
inline constexpr std::size_t kTokenLength = 4 + 32;
inline constexpr std::size_t kTokenHashLength = 64;

// Initialises libsodium (idempotent). The other functions call it too.
Status init();

// A new random customer id, "cust_" + 16 lowercase hex digits.
Result<std::string> new_customer_id();

// A new random bearer token, "lgk_" + 32 base64url characters.
Result<std::string> new_token();

// The SHA-256 of `token`'s bytes as 64 lowercase hex digits. Accepts any
// input, including an empty or malformed token, and takes the same path
// for all of them.
Result<std::string> hash_token(std::string_view token);

// True if `token` has the shape new_token() produces. A cheap syntactic
// check only; it says nothing about whether the token is valid.
bool has_token_shape(std::string_view token) noexcept;

}  // namespace lgr::tokens
