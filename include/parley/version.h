/* The version every program reports (ping, --version, metrics build info). */
#ifndef PARLEY_VERSION_H
#define PARLEY_VERSION_H
#define PL_VERSION "0.1.0"
#endif
