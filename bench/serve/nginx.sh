# Sourced by run.sh, scale.sh and ab.sh: nginx (Debian's) as the plain reverse proxy serve is measured
# against: proxy_pass with buffering off, keep-alive connections to the upstream (up to 256 idle,
# as serve's --upstream-idle keeps by default), no access log.
#
#   start_nginx DIR PORT UPSTREAM_PORT [CONNECTIONS]
# writes DIR/nginx/nginx.conf, starts nginx in the background listening on 127.0.0.1:PORT and
# sets NGINX_PID. CONNECTIONS (default 256) is worker_connections: a stream holds two.
# NGINX_WRAPPER, when set, is a command line nginx runs under (instructions.sh: callgrind); its
# words are split on spaces.
start_nginx() {
  local dir=$1 port=$2 upstream=$3 connections=${4:-256}
  local nginx
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  mkdir -p "$dir/nginx"
  cat >"$dir/nginx/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
worker_rlimit_nofile $((connections * 2 + 64));
events { worker_connections $connections; }
http {
  access_log off;
  client_body_temp_path $dir/nginx/body; proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fastcgi; uwsgi_temp_path $dir/nginx/uwsgi; scgi_temp_path $dir/nginx/scgi;
  upstream synth { server 127.0.0.1:$upstream; keepalive 256; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$port;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://synth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      tcp_nodelay on;
    }
  }
}
CONF
  local -a wrapper=()
  [[ -n ${NGINX_WRAPPER:-} ]] && read -ra wrapper <<<"$NGINX_WRAPPER"
  "${wrapper[@]}" "$nginx" -e "$dir/nginx/error.log" -p "$dir/nginx" -c "$dir/nginx/nginx.conf" \
    >"$dir/nginx.out" 2>&1 &
  NGINX_PID=$!
}
