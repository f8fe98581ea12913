/* prewarmctl: the command-line client of prewarmd; everything lives in src/cli. */
#include "cli/cli.h"

int main(int argc, char **argv)
{
    return pw_cli_main(argc, argv);
}
