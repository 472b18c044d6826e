package quarry.minidfs;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.List;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.BlockLocation;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocatedFileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RemoteIterator;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;

/**
 * quarry's HDFS test helper.
 *
 * <p>{@code serve DIR} starts a real MiniDFSCluster on 127.0.0.1 with its data in DIR and
 * prints {@code hdfs://127.0.0.1:PORT} as the first line of stdout once it accepts clients;
 * it runs until it is killed. The other commands are an HDFS client independent of quarry's
 * own: Hadoop's FileSystem API, for seeding inputs and checking outputs in tests.
 */
public final class Main {
    private static final String USAGE = String.join("\n",
            "usage: minidfs serve DIR [--hosts h1,h2,..] [--datanodes N] [--replication R] [--block-size BYTES] [--ha]",
            "       minidfs ls URL           recursive listing: path TAB length TAB mtime-ms TAB owner",
            "       minidfs cat URL          the file's bytes on stdout",
            "       minidfs put LOCAL URL    copies a local file or directory (overwrites)",
            "       minidfs write URL        writes stdin to the file (overwrites)",
            "       minidfs rm URL           deletes recursively",
            "       minidfs locations URL    per block: path TAB offset TAB length TAB host,host",
            "       minidfs read-all URL [--passes N]   reads every file; per pass: files=N bytes=B seconds=S");

    /** stdout as it was at start; everything else printing to System.out goes to stderr. */
    private static PrintStream out;

    private Main() {}

    public static void main(String[] args) throws Exception {
        out = System.out;
        System.setOut(System.err);
        if (args.length < 2) {
            fail(USAGE);
        }
        String url = args[1];
        switch (args[0]) {
            case "serve" -> serve(new File(url).getAbsoluteFile(), args);
            case "ls" -> ls(url);
            case "cat" -> cat(url);
            case "put" -> {
                if (args.length != 3) {
                    fail(USAGE);
                }
                put(args[1], args[2]);
            }
            case "write" -> write(url);
            case "rm" -> fs(url).delete(new Path(url), true);
            case "locations" -> locations(url);
            case "read-all" -> readAll(url, Integer.parseInt(option(args, "--passes", "1")));
            default -> fail(USAGE);
        }
        out.flush();
        // Hadoop leaves non-daemon threads behind; a client command is done here.
        System.exit(0);
    }

    private static void fail(String message) {
        System.err.println(message);
        System.exit(2);
    }

    private static String option(String[] args, String name, String fallback) {
        for (int i = 2; i + 1 < args.length; i++) {
            if (args[i].equals(name)) {
                return args[i + 1];
            }
        }
        return fallback;
    }

    private static void serve(File dir, String[] args) throws Exception {
        String hostList = option(args, "--hosts", "");
        String[] hosts = hostList.isEmpty() ? null : hostList.split(",");
        int datanodes = hosts != null ? hosts.length : Integer.parseInt(option(args, "--datanodes", "1"));
        int replication = Integer.parseInt(option(args, "--replication", String.valueOf(Math.min(3, datanodes))));
        long blockSize = Long.parseLong(option(args, "--block-size", String.valueOf(128L << 20)));
        boolean ha = java.util.Arrays.asList(args).contains("--ha");

        File data = new File(dir, "data");
        File formatted = new File(dir, "formatted");
        boolean existing = formatted.exists();
        Files.createDirectories(data.toPath());

        Configuration conf = new HdfsConfiguration();
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, data.getPath());
        conf.setInt("dfs.replication", replication);
        conf.setLong("dfs.blocksize", blockSize);
        conf.setLong("dfs.namenode.fs-limits.min-block-size", 0);
        // DataNodes named by --hosts all live on 127.0.0.1; the names only say
        // which replica is where, so the NameNode must not check them in DNS.
        conf.setBoolean("dfs.namenode.datanode.registration.ip-hostname-check", false);
        conf.set("dfs.namenode.rpc-bind-host", "127.0.0.1");
        conf.set("dfs.namenode.http-bind-host", "127.0.0.1");

        MiniDFSCluster.Builder builder = new MiniDFSCluster.Builder(conf)
                .numDataNodes(datanodes)
                .hosts(hosts)
                .format(!existing);
        if (ha) {
            builder.nnTopology(org.apache.hadoop.hdfs.MiniDFSNNTopology.simpleHATopology());
        } else {
            builder.nameNodePort(0).nameNodeHttpPort(0);
        }
        MiniDFSCluster cluster = builder.build();
        Runtime.getRuntime().addShutdownHook(new Thread(cluster::shutdown));
        // With --ha the second NameNode is the active one, so that clients
        // must fail over from the first.
        int active = ha ? 1 : 0;
        if (ha) {
            cluster.transitionToActive(active);
        }
        cluster.waitActive();
        // Any user may write (as in /tmp): tests and quarry run as HADOOP_USER_NAME.
        cluster.getFileSystem(active).setPermission(new Path("/"),
                new org.apache.hadoop.fs.permission.FsPermission((short) 01777));
        Files.writeString(formatted.toPath(), "");

        int port = cluster.getNameNodePort(active);
        int httpPort = cluster.getNameNode(active).getHttpAddress().getPort();
        String url = "hdfs://127.0.0.1:" + port;
        File confDir = new File(dir, "conf");
        Files.createDirectories(confDir.toPath());
        List<String[]> site = new ArrayList<>();
        site.add(new String[] {"dfs.replication", String.valueOf(replication)});
        String defaultFs = url;
        if (ha) {
            String ns = "minidfs-ns";
            defaultFs = "hdfs://" + ns;
            site.add(new String[] {"dfs.nameservices", ns});
            site.add(new String[] {"dfs.ha.namenodes." + ns, "nn1,nn2"});
            for (int nn = 0; nn < 2; nn++) {
                String id = ns + ".nn" + (nn + 1);
                site.add(new String[] {"dfs.namenode.rpc-address." + id,
                    "127.0.0.1:" + cluster.getNameNodePort(nn)});
                site.add(new String[] {"dfs.namenode.http-address." + id,
                    "127.0.0.1:" + cluster.getNameNode(nn).getHttpAddress().getPort()});
            }
            site.add(new String[] {"dfs.client.failover.proxy.provider." + ns,
                "org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider"});
        } else {
            site.add(new String[] {"dfs.namenode.http-address", "127.0.0.1:" + httpPort});
        }
        writeSite(new File(confDir, "core-site.xml"), new String[][] {{"fs.defaultFS", defaultFs}});
        writeSite(new File(confDir, "hdfs-site.xml"), site.toArray(new String[0][]));

        out.println(url);
        if (ha) {
            out.println("nameservice " + defaultFs);
        }
        out.println("http 127.0.0.1:" + httpPort);
        out.println("conf " + confDir.getPath());
        out.println("datanodes " + datanodes + (hosts == null ? "" : " " + hostList));
        out.flush();
        while (true) {
            Thread.sleep(Long.MAX_VALUE);
        }
    }

    /** Writes a Hadoop configuration file, so that HADOOP_CONF_DIR can point at it. */
    private static void writeSite(File file, String[][] properties) throws IOException {
        StringBuilder xml = new StringBuilder("<?xml version=\"1.0\"?>\n<configuration>\n");
        for (String[] property : properties) {
            xml.append("  <property><name>").append(property[0]).append("</name><value>")
                    .append(property[1]).append("</value></property>\n");
        }
        xml.append("</configuration>\n");
        File partial = new File(file.getPath() + ".tmp");
        Files.writeString(partial.toPath(), xml.toString(), StandardCharsets.UTF_8);
        Files.move(partial.toPath(), file.toPath(), java.nio.file.StandardCopyOption.REPLACE_EXISTING,
                java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }

    private static FileSystem fs(String url) throws IOException {
        return FileSystem.get(URI.create(url), new Configuration());
    }

    private static List<LocatedFileStatus> files(String url) throws IOException {
        List<LocatedFileStatus> files = new ArrayList<>();
        RemoteIterator<LocatedFileStatus> it = fs(url).listFiles(new Path(url), true);
        while (it.hasNext()) {
            files.add(it.next());
        }
        return files;
    }

    private static void ls(String url) throws IOException {
        for (LocatedFileStatus file : files(url)) {
            out.println(file.getPath().toUri().getPath() + "\t" + file.getLen() + "\t"
                    + file.getModificationTime() + "\t" + file.getOwner());
        }
    }

    private static void locations(String url) throws IOException {
        for (LocatedFileStatus file : files(url)) {
            for (BlockLocation block : file.getBlockLocations()) {
                out.println(file.getPath().toUri().getPath() + "\t" + block.getOffset() + "\t"
                        + block.getLength() + "\t" + String.join(",", block.getHosts()));
            }
        }
    }

    private static void cat(String url) throws IOException {
        try (FSDataInputStream in = fs(url).open(new Path(url))) {
            in.transferTo(out);
        }
    }

    private static void put(String local, String url) throws IOException {
        fs(url).copyFromLocalFile(false, true, new Path(new File(local).getAbsolutePath()), new Path(url));
    }

    private static void write(String url) throws IOException {
        try (FSDataOutputStream target = fs(url).create(new Path(url), true)) {
            System.in.transferTo(target);
        }
    }

    /** The plain-read floor: every file under URL read whole by Hadoop's own client. */
    private static void readAll(String url, int passes) throws IOException {
        FileSystem fs = fs(url);
        List<LocatedFileStatus> files = files(url);
        byte[] buffer = new byte[1 << 20];
        for (int pass = 1; pass <= passes; pass++) {
            long started = System.nanoTime();
            long bytes = 0;
            for (FileStatus file : files) {
                try (InputStream in = fs.open(file.getPath())) {
                    for (int n; (n = in.read(buffer)) > 0; ) {
                        bytes += n;
                    }
                }
            }
            double seconds = (System.nanoTime() - started) / 1e9;
            out.printf("files=%d bytes=%d seconds=%.6f%n", files.size(), bytes, seconds);
        }
    }
}
