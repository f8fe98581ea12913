/* version.h: prewarm's one version number, shared by prewarmd, prewarmctl, prewarm-agent and the
 * default helper/agent image, so a release changes one line. */
#ifndef PW_BASE_VERSION_H
#define PW_BASE_VERSION_H

#define PW_VERSION "0.1.0"
/* The image that carries prewarm-agent and the Job mode helper (Dockerfile builds it). */
#define PW_IMAGE "ghcr.io/prewarm/prewarm:" PW_VERSION

#endif
