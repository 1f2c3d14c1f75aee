/* A stand-in bcryptprimitives.dll for wine versions that lack it (wine 8,
 * Debian 12). Rust's std imports ProcessPrng from it on Windows (random hash
 * map seeds); Windows 10 and later ship the real one. Used only inside the
 * wine prefix that scripts/cross-win.js prepares; never shipped. */
#include <windows.h>

/* advapi32's RtlGenRandom. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
  while (length > 0) {
    ULONG n = length > 0x10000000 ? 0x10000000 : (ULONG)length;
    if (!SystemFunction036(data, n)) return FALSE;
    data += n;
    length -= n;
  }
  return TRUE;
}
