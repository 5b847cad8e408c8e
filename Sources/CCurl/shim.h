// CCurl: libcurl for Swift.
// Why a shim: curl_easy_setopt / curl_easy_getinfo are variadic, and Swift
// cannot call C variadic functions. One typed wrapper per argument type;
// no logic.
#ifndef PLAINFLOW_CCURL_SHIM_H
#define PLAINFLOW_CCURL_SHIM_H
#include <curl/curl.h>

static inline CURLcode pf_curl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode pf_curl_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode pf_curl_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode pf_curl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode pf_curl_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode pf_curl_setopt_write_cb(CURL *h, CURLoption o, curl_write_callback v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode pf_curl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }

// CURLAUTH_BASIC is a macro with a cast, which Swift does not import.
static inline long pf_curlauth_basic(void) { return (long)CURLAUTH_BASIC; }

#endif
