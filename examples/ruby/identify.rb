#!/usr/bin/env ruby
# One identify to plainflow-relay: the line protocol over its Unix socket
# (UNIXSocket) and HTTP over TCP (Net::HTTP), standard library only.
# A 503 (the relay cannot store the call now) is retried after the
# Retry-After (HTTP header, or "retry_after" in the reply line) with the
# same message_id: the relay stores it once.
#
#   PLAINFLOW_RELAY_SOCKET=/run/plainflow-relay/relay.sock \
#   PLAINFLOW_RELAY_URL=http://127.0.0.1:8787 ruby identify.rb [USER_ID]
require 'json'
require 'net/http'
require 'securerandom'
require 'socket'

SOCKET = ENV.fetch('PLAINFLOW_RELAY_SOCKET', '/run/plainflow-relay/relay.sock')
URL = URI(ENV.fetch('PLAINFLOW_RELAY_URL', 'http://127.0.0.1:8787'))
ATTEMPTS = 5
$stdout.sync = true

def new_message(user_id)
  { type: 'identify', user_id: user_id, message_id: SecureRandom.uuid,
    traits: { firstName: 'Ada', lastName: 'Lovelace', email: 'ada@example.com', plan: 'premium', logins: 5 } }
end

# The line protocol: one JSON call per line, one JSON reply line per call, in order.
def identify_line(user_id)
  message = new_message(user_id)
  UNIXSocket.open(SOCKET) do |sock|
    ATTEMPTS.times do
      sock.puts(JSON.generate(message))
      reply = sock.gets or raise 'unix: the relay closed the connection'
      answer = JSON.parse(reply)
      status = answer['ok'] ? 200 : answer['status']
      puts "unix #{status} #{message[:message_id]}"
      return answer if status == 200
      raise "unix: refused (#{status}): #{answer['errors'].join('; ')}" unless status == 503

      sleep(answer.fetch('retry_after', 5)) # not stored: the same line again, later
    end
  end
  raise "unix: still 503 after #{ATTEMPTS} attempts"
end

def identify_http(user_id)
  message = new_message(user_id)
  Net::HTTP.start(URL.host, URL.port, read_timeout: 30) do |http|
    ATTEMPTS.times do
      response = http.post('/v1/identify', JSON.generate(message), 'Content-Type' => 'application/json')
      answer = JSON.parse(response.body || '{}')
      puts "tcp #{response.code} #{message[:message_id]}"
      return answer if response.code == '200' && answer['ok']
      raise "tcp: refused (#{response.code}): #{Array(answer['errors']).join('; ')}" unless response.code == '503'

      sleep(Integer(response['Retry-After'] || 5))
    end
  end
  raise "tcp: still 503 after #{ATTEMPTS} attempts"
end

user_id = ARGV[0] || '97980cfea0067'
begin
  identify_line(user_id)
  identify_http(user_id)
rescue StandardError => e
  warn "identify failed: #{e.message}"
  exit 1
end
