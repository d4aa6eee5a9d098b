# Bulwark API server. Runs the TypeScript sources directly on Node 24 (type stripping), no build step.
FROM node:24-bookworm-slim
ENV NODE_ENV=production BULWARK_ENV=production BULWARK_HOST=0.0.0.0 BULWARK_DATA_DIR=/var/lib/bulwark
WORKDIR /app
COPY package.json package-lock.json ./
# The node@24 devDependency is not needed: the image already runs Node 24.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY bin ./bin
COPY src ./src
RUN mkdir -p /var/lib/bulwark && chown node:node /var/lib/bulwark
USER node
EXPOSE 8080
HEALTHCHECK CMD node -e "fetch('http://127.0.0.1:8080/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "bin/bulwark.js"]
CMD ["serve"]
