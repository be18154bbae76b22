/* How an extension was compiled, so that the tests can prove which build is loaded. */
#ifndef FASTLOSS_BUILD_H
#define FASTLOSS_BUILD_H

/* setup.py defines FASTLOSS_DEBUG_BUILD for the debug build (FASTLOSS_DEBUG=1). */
#ifdef FASTLOSS_DEBUG_BUILD
#define FL_DEBUG_BUILD 1
#else
#define FL_DEBUG_BUILD 0
#endif

/* gcc and clang define __SANITIZE_ADDRESS__ or __has_feature(address_sanitizer) under -fsanitize=address. */
#if defined(__SANITIZE_ADDRESS__)
#define FL_ASAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FL_ASAN_BUILD 1
#endif
#endif
#ifndef FL_ASAN_BUILD
#define FL_ASAN_BUILD 0
#endif

#endif
