/* hiredis (libhiredis-dev): the RESP reply reader and the command formatter. Parley does its own I/O on SwiftNIO's
   event loops and uses only these two pure parts of hiredis. */
#include <hiredis/hiredis.h>
