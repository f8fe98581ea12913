/* cli.h: prewarmctl, the command-line client of prewarmd. It talks to prewarmd only over the public
 * REST API (ARCHITECTURE.md §3), like curl's tool uses only libcurl.
 *
 * Thread model: call from the main thread only; it installs SIGINT/SIGTERM handlers while waiting. */
#ifndef PW_CLI_H
#define PW_CLI_H

/* Runs prewarmctl with argv (borrowed) and returns the process exit code: 0 success (a waited task
 * succeeded), 1 the task failed, 2 usage error, 3 the task was cancelled, 4 prewarmd unreachable or an
 * API error, 130 waiting interrupted by Ctrl-C. Never calls exit(). */
int pw_cli_main(int argc, char **argv);

#endif
