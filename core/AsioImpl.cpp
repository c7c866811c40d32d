// The one translation unit that compiles Asio's and Beast's out-of-line code
// (TLS is OpenSSL on the socket directly, see gateway/Transport.h, so no Asio SSL)
// (BOOST_ASIO_SEPARATE_COMPILATION / BOOST_BEAST_SEPARATE_COMPILATION), so every
// other file that uses them compiles faster.
#include <utility>

#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
