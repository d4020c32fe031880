FROM busybox
COPY build/marker.txt /marker.txt
RUN echo custom > /custom
