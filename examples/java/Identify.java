// One identify to plainflow-relay: the line protocol over its Unix socket
// (SocketChannel with a UnixDomainSocketAddress, Java 16+) and HTTP over TCP
// (java.net.http.HttpClient). JDK only. A 503 (the relay cannot store the
// call now) is retried after the Retry-After (HTTP header, or "retry_after"
// in the reply line) with the same message_id: the relay stores it once.
//
//   PLAINFLOW_RELAY_SOCKET=/run/plainflow-relay/relay.sock \
//   PLAINFLOW_RELAY_URL=http://127.0.0.1:8787 java Identify.java [USER_ID]

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.URI;
import java.net.UnixDomainSocketAddress;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.UUID;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class Identify {
    static final int ATTEMPTS = 5;

    /** The call as JSON. (Any JSON library does this; the JDK has none.) */
    static String identifyJSON(String userId, String messageId) {
        return "{\"type\":\"identify\",\"user_id\":" + quote(userId) + ",\"message_id\":" + quote(messageId)
            + ",\"traits\":{\"firstName\":\"Ada\",\"lastName\":\"Lovelace\",\"email\":\"ada@example.com\","
            + "\"plan\":\"premium\",\"logins\":5}}";
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }

    /** A number field of a flat JSON answer, or the fallback. */
    static int number(String json, String key, int fallback) {
        Matcher m = Pattern.compile("\"" + key + "\":(\\d+)").matcher(json);
        return m.find() ? Integer.parseInt(m.group(1)) : fallback;
    }

    /** The line protocol: one JSON call per line, one JSON reply line per call, in order. */
    static void identifyLine(String socket, String userId) throws IOException, InterruptedException {
        String id = UUID.randomUUID().toString();
        ByteBuffer line = ByteBuffer.wrap((identifyJSON(userId, id) + "\n").getBytes(StandardCharsets.UTF_8));
        try (SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            channel.connect(UnixDomainSocketAddress.of(socket));
            for (int i = 0; i < ATTEMPTS; i++) {
                line.rewind();
                while (line.hasRemaining()) channel.write(line);
                String reply = readLine(channel);
                int status = reply.contains("\"ok\":true") ? 200 : number(reply, "status", 0);
                System.out.println("unix " + status + " " + id);
                if (status == 200) return;
                if (status != 503) throw new IOException("unix: refused (" + status + "): " + reply);
                Thread.sleep(1000L * number(reply, "retry_after", 5)); // not stored: the same line again, later
            }
        }
        throw new IOException("unix: still 503 after " + ATTEMPTS + " attempts");
    }

    static String readLine(SocketChannel channel) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteBuffer one = ByteBuffer.allocate(1);
        while (true) {
            one.clear();
            if (channel.read(one) < 0) throw new IOException("unix: the relay closed the connection");
            byte b = one.get(0);
            if (b == '\n') return out.toString(StandardCharsets.UTF_8);
            out.write(b);
        }
    }

    static void identifyHTTP(String url, String userId) throws IOException, InterruptedException {
        String id = UUID.randomUUID().toString();
        HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(10)).build();
        HttpRequest request = HttpRequest.newBuilder(URI.create(url + "/v1/identify"))
            .timeout(Duration.ofSeconds(30)).header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(identifyJSON(userId, id))).build();
        for (int i = 0; i < ATTEMPTS; i++) {
            HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
            System.out.println("tcp " + response.statusCode() + " " + id);
            if (response.statusCode() == 200 && response.body().contains("\"ok\":true")) return;
            if (response.statusCode() != 503) throw new IOException("tcp: refused (" + response.statusCode() + "): " + response.body());
            long wait = response.headers().firstValueAsLong("Retry-After").orElse(5);
            Thread.sleep(1000L * wait);
        }
        throw new IOException("tcp: still 503 after " + ATTEMPTS + " attempts");
    }

    public static void main(String[] args) throws InterruptedException {
        String socket = System.getenv().getOrDefault("PLAINFLOW_RELAY_SOCKET", "/run/plainflow-relay/relay.sock");
        String url = System.getenv().getOrDefault("PLAINFLOW_RELAY_URL", "http://127.0.0.1:8787");
        String userId = args.length > 0 ? args[0] : "97980cfea0067";
        try {
            identifyLine(socket, userId);
            identifyHTTP(url, userId);
        } catch (IOException e) {
            System.err.println("identify failed: " + e.getMessage());
            System.exit(1);
        }
    }
}
