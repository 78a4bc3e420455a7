/* Placeholder: the plugin ABI v1 header is written by the plugin ABI issue. */
#ifndef PARLEY_H
#define PARLEY_H
#define PARLEY_ABI_MAJOR 1
#define PARLEY_ABI_MINOR 0
#endif
