package packaging_test

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// userIDs reads a user's uid and primary gid, and a group's members, from a root file system.
func userIDs(t *testing.T, root, user string) (uid, gid int) {
	t.Helper()
	uid, gid = -1, -1
	for _, line := range readLines(t, filepath.Join(root, "etc/passwd")) {
		f := strings.Split(line, ":")
		if len(f) > 3 && f[0] == user {
			uid, _ = strconv.Atoi(f[2])
			gid, _ = strconv.Atoi(f[3])
		}
	}
	require.GreaterOrEqual(t, uid, 0, "no %s user in %s/etc/passwd", user, root)
	return uid, gid
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	require.NoError(t, sc.Err())
	return lines
}

// requireFile checks a file's mode and owner.
func requireFile(t *testing.T, path string, mode os.FileMode, uid, gid int) {
	t.Helper()
	st, err := os.Lstat(path)
	require.NoError(t, err)
	require.Equal(t, mode, st.Mode().Perm(), "mode of %s", path)
	sys := st.Sys().(*syscall.Stat_t)
	require.Equal(t, []int{uid, gid}, []int{int(sys.Uid), int(sys.Gid)}, "owner of %s", path)
}

// inImage runs a program inside a root file system with a clean environment (the test's
// EDGECAM_* variables would be configuration errors there).
func inImage(args ...string) *exec.Cmd {
	cmd := exec.Command("chroot", args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	return cmd
}

// canChroot reports whether the root file system's programs run here (qemu-user through
// binfmt_misc for a foreign architecture).
func canChroot(root string) bool {
	return inImage(root, "/bin/true").Run() == nil
}

// copyTree copies the cached root file system for one test (cp -a keeps owners and modes).
func copyTree(t *testing.T, from string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "root")
	out, err := exec.Command("cp", "-a", from, to).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return to
}

// TestFactoryImage runs packaging/image/factory.sh on an arm64 Debian root file system made
// with mmdebstrap (standing in for Raspberry Pi OS 64-bit): once with the image's dpkg in a
// qemu chroot, once chrootless with the host's dpkg, and once on an .img through a loop
// device. It checks the files, owners and modes, the user, the dpkg state, the enabled unit,
// the configuration's endpoints, and runs `edgecam config validate` and `config print` inside
// the image under qemu.
func TestFactoryImage(t *testing.T) {
	if os.Getenv(crossEnv) != "1" {
		t.Skipf("set %s=1: builds the arm64 .deb and an arm64 root file system (minutes, cached after)", crossEnv)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: mmdebstrap, chroot, chown")
	}
	deb := debFor(t, "arm64")
	out, err := exec.Command("image/test-rootfs.sh", "arm64", deb).Output()
	require.NoError(t, err, "test-rootfs.sh: %s", exitStderr(err))
	cached := strings.TrimSpace(string(out))
	p := newPKI(t)

	tests := []struct {
		name    string
		image   bool
		flags   []string
		chroot  bool // validate and print inside the image afterwards
		install string
	}{
		{name: "chroot", chroot: true, install: "image's dpkg in a chroot"},
		{name: "chrootless", flags: []string{"--no-chroot"}, chroot: true, install: "host's dpkg, chrootless"},
		{name: "image", image: true, chroot: true, install: "image's dpkg in a chroot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.install == "image's dpkg in a chroot" && !canChroot(cached) {
				t.Skip("arm64 programs do not run here: apt-get install qemu-user-static and mount binfmt_misc")
			}
			root := copyTree(t, cached)
			target := []string{"--root", root}
			var img string
			if tt.image {
				img = makeImage(t, root)
				target = []string{"--image", img}
			}
			args := append(factoryArgs(p, "", filepath.Dir(deb), map[string]string{
				"--root": "", "--deb": "", "--template": "edgecam-batch7", "--role-alias": "edgecam-kvs-eu",
			}), target...)
			args = append(args, "--debs", filepath.Dir(deb))
			args = append(args, tt.flags...)
			cmd := exec.Command("image/factory.sh", args...)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "factory.sh:\n%s", out)
			require.Contains(t, string(out), tt.install)
			if tt.image {
				root = mountImage(t, img)
			}
			checkFactoryRoot(t, root, p)
			if tt.chroot && canChroot(root) {
				uid, gid := userIDs(t, root, "edgecam")
				spec := "--userspec=" + strconv.Itoa(uid) + ":" + strconv.Itoa(gid)
				out, err := inImage(spec, root, "/usr/bin/edgecam", "config", "validate").CombinedOutput()
				require.NoError(t, err, "%s", out)
				require.Contains(t, string(out), "configuration OK: /etc/edgecam/edgecam.yaml")
				out, err = inImage(spec, root, "/usr/bin/edgecam", "config", "print").CombinedOutput()
				require.NoError(t, err, "%s", out)
				for _, want := range []string{testIoT, testCreds, "eu-west-1", "/etc/edgecam/AmazonRootCA1.pem", "edgecam-batch7", "edgecam-kvs-eu"} {
					require.Contains(t, string(out), want)
				}
				out, err = inImage(root, "/usr/bin/edgecam", "version").CombinedOutput()
				require.NoError(t, err, "%s", out)
				t.Logf("edgecam version inside the arm64 image (qemu):\n%s", out)
			}
		})
	}

	t.Run("wrong architecture", func(t *testing.T) {
		armhf := debFor(t, "armhf")
		root := copyTree(t, cached)
		out, err := exec.Command("image/factory.sh", factoryArgs(p, root, armhf, nil)...).CombinedOutput()
		require.Error(t, err)
		require.Contains(t, string(out), "is for armhf, the image in")
		require.NoFileExists(t, filepath.Join(root, "usr/bin/edgecam"))
	})
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// checkFactoryRoot checks what factory.sh leaves in a root file system.
func checkFactoryRoot(t *testing.T, root string, p pki) {
	t.Helper()
	uid, gid := userIDs(t, root, "edgecam")
	require.Less(t, uid, 1000, "a system user")
	shell := ""
	for _, line := range readLines(t, filepath.Join(root, "etc/passwd")) {
		if f := strings.Split(line, ":"); f[0] == "edgecam" {
			shell = f[6]
		}
	}
	require.Contains(t, []string{"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"}, shell)
	video := ""
	for _, line := range readLines(t, filepath.Join(root, "etc/group")) {
		if strings.HasPrefix(line, "video:") {
			video = line
		}
	}
	require.Regexp(t, `[:,]edgecam(,|$)`, video, "edgecam in the video group")

	f, err := elf.Open(filepath.Join(root, "usr/bin/edgecam"))
	require.NoError(t, err)
	require.Equal(t, elf.EM_AARCH64, f.Machine)
	f.Close()
	requireFile(t, filepath.Join(root, "usr/bin/edgecam"), 0o755, 0, 0)
	requireFile(t, filepath.Join(root, "etc/edgecam/claim.pem"), 0o600, uid, gid)
	requireFile(t, filepath.Join(root, "etc/edgecam/claim.key"), 0o600, uid, gid)
	requireFile(t, filepath.Join(root, "etc/edgecam/AmazonRootCA1.pem"), 0o644, 0, 0)
	requireFile(t, filepath.Join(root, "etc/edgecam/edgecam.yaml"), 0o640, 0, gid)
	requireFile(t, filepath.Join(root, "var/lib/edgecam"), 0o700, uid, gid)
	for src, dst := range map[string]string{p.cert: "etc/edgecam/claim.pem", p.key: "etc/edgecam/claim.key", p.ca: "etc/edgecam/AmazonRootCA1.pem"} {
		a, err := os.ReadFile(src)
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(root, dst))
		require.NoError(t, err)
		require.Equal(t, a, b, dst)
	}
	entries, err := os.ReadDir(filepath.Join(root, "var/lib/edgecam"))
	require.NoError(t, err)
	require.Empty(t, entries, "no identity: the first boot provisions by claim")

	link, err := os.Readlink(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/edgecam.service"))
	require.NoError(t, err, "the unit enabled")
	require.Equal(t, "/lib/systemd/system/edgecam.service", link)
	require.FileExists(t, filepath.Join(root, link))

	out, err := exec.Command("dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W",
		"-f=${db:Status-Status} ${Architecture}", "edgecam").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "installed arm64", string(out))

	conf, err := os.ReadFile(filepath.Join(root, "etc/edgecam/edgecam.yaml"))
	require.NoError(t, err)
	for _, want := range []string{
		`endpoint: "` + testIoT + `"`, `endpoint: "` + testCreds + `"`, `region: "eu-west-1"`,
		`ca_cert: "/etc/edgecam/AmazonRootCA1.pem"`, `template: "edgecam-batch7"`,
	} {
		require.Contains(t, string(conf), want)
	}
	require.Contains(t, string(conf), "# AWS IoT Core data endpoint", "the documented file, comments kept")
}

// makeImage writes a Raspberry Pi OS-shaped .img (a FAT boot partition, then an ext4 root
// partition holding root) and removes root.
func makeImage(t *testing.T, root string) string {
	t.Helper()
	for _, tool := range []string{"sfdisk", "mkfs.ext4", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	if out, err := exec.Command("losetup", "-f").CombinedOutput(); err != nil {
		t.Skipf("no free loop device here (%s): the .img path cannot be tested", strings.TrimSpace(string(out)))
	}
	out, err := exec.Command("du", "-sm", root).Output()
	require.NoError(t, err)
	mb, err := strconv.Atoi(strings.Fields(string(out))[0])
	require.NoError(t, err)
	rootMB := mb*2 + 300 // room for ext4's metadata and the package
	img := filepath.Join(t.TempDir(), "raspios.img")
	const bootMB = 64
	run := func(name string, args ...string) {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		require.NoError(t, err, "%s %v: %s", name, args, out)
	}
	run("truncate", "-s", strconv.Itoa(4+bootMB+rootMB)+"M", img)
	layout := "label: dos\nstart=8192, size=" + strconv.Itoa(bootMB*2048) + ", type=c\nstart=" +
		strconv.Itoa(8192+bootMB*2048) + ", type=83\n"
	cmd := exec.Command("sfdisk", "--quiet", img)
	cmd.Stdin = strings.NewReader(layout)
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "sfdisk: %s", out)
	off := (8192 + bootMB*2048) * 512
	run("mkfs.ext4", "-q", "-F", "-d", root, "-E", "offset="+strconv.Itoa(off), img, strconv.Itoa(rootMB)+"M")
	require.NoError(t, os.RemoveAll(root))
	return img
}

// mountImage mounts the root partition of an image made by makeImage, read-only.
func mountImage(t *testing.T, img string) string {
	t.Helper()
	off := (8192 + 64*2048) * 512
	dir := t.TempDir()
	out, err := exec.Command("losetup", "--find", "--show", "--read-only", "--offset", strconv.Itoa(off), img).Output()
	require.NoError(t, err, exitStderr(err))
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", loop).Run() })
	out, err = exec.Command("mount", "-o", "ro", loop, dir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	return dir
}
