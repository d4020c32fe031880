# With -f docker/app.Dockerfile, docker/app.Dockerfile.dockerignore is used
# instead of the context's .dockerignore.
FROM busybox
COPY . /ctx/
