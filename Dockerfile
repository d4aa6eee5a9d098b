# Bulwark API server. It runs the TypeScript sources directly on Node 24 (type stripping): no build step.
# Build: docker build -t registry.example.com/bulwark:0.1.0 .   (docs/deployment.md)
# For reproducible builds pin the base image by digest: --build-arg NODE_IMAGE=node:24-bookworm-slim@sha256:...
ARG NODE_IMAGE=node:24-bookworm-slim

# 1. Production dependencies only, exactly as locked. The node@24 devDependency stays out with the other
#    devDependencies: the image already runs Node 24.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# 2. The runtime: node_modules, package.json ("type": "module"), bin/ and src/ without the tests
#    (.dockerignore), owned by root so the server cannot change its own code. No npm cache, lockfile or docs.
FROM ${NODE_IMAGE}
ENV NODE_ENV=production BULWARK_ENV=production BULWARK_HOST=0.0.0.0 BULWARK_PORT=8080 BULWARK_DATA_DIR=/var/lib/bulwark
RUN groupadd --system --gid 10001 bulwark \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin bulwark \
 && mkdir -p /var/lib/bulwark \
 && chown 10001:10001 /var/lib/bulwark \
 && chmod 0700 /var/lib/bulwark
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY src ./src
# Numeric, so Kubernetes can verify runAsNonRoot without an /etc/passwd lookup.
USER 10001:10001
# Works with a read-only root filesystem when /var/lib/bulwark and /tmp are volumes:
#   docker run --read-only --tmpfs /tmp -v bulwark-data:/var/lib/bulwark ...
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.BULWARK_PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "bin/bulwark.js"]
CMD ["serve"]
