package provisioning

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

var serialRE = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)

// DetectSerial finds the device's serial number under root ("/" on a device), in order:
//   - /proc/cpuinfo "Hardware" and "Serial" lines: "BCM2835-00000000b211cf11", as AWS's
//     surveillance sample names Raspberry Pis;
//   - the device-tree serial-number, prefixed by the SoC of the device-tree "compatible"
//     list when there is one ("BCM2711-10000000abcdef01");
//   - /etc/machine-id.
//
// The result is usable as an AWS IoT thing name.
func DetectSerial(root string) (string, error) {
	read := func(p string) []byte {
		b, _ := os.ReadFile(filepath.Join(root, p))
		return b
	}
	hardware, serial := cpuinfo(read("proc/cpuinfo"))
	if serial != "" {
		if hardware == "" {
			hardware = soc(read("proc/device-tree/compatible"))
		}
		return clean(hardware, serial)
	}
	for _, p := range []string{"proc/device-tree/serial-number", "sys/firmware/devicetree/base/serial-number"} {
		if s := strings.TrimSpace(string(bytes.TrimRight(read(p), "\x00"))); s != "" {
			return clean(soc(read("proc/device-tree/compatible")), s)
		}
	}
	if id := strings.TrimSpace(string(read("etc/machine-id"))); id != "" {
		return clean("", id)
	}
	return "", errors.New("no serial number found in /proc/cpuinfo, the device tree or /etc/machine-id: set device.serial")
}

// cpuinfo returns the Hardware and Serial values of /proc/cpuinfo.
func cpuinfo(data []byte) (hardware, serial string) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(key) {
		case "Hardware":
			hardware = strings.TrimSpace(value)
		case "Serial":
			serial = strings.TrimSpace(value)
		}
	}
	// Some kernels print an all-zero serial on boards without one.
	if strings.Trim(serial, "0") == "" {
		serial = ""
	}
	return hardware, serial
}

// soc returns the SoC named in a device-tree compatible list ("brcm,bcm2711" → "BCM2711").
func soc(compatible []byte) string {
	parts := bytes.Split(bytes.TrimRight(compatible, "\x00"), []byte{0})
	if len(parts) == 0 || len(parts[len(parts)-1]) == 0 {
		return ""
	}
	_, chip, _ := strings.Cut(string(parts[len(parts)-1]), ",")
	return strings.ToUpper(chip)
}

func clean(prefix, serial string) (string, error) {
	s := serial
	if prefix != "" {
		s = prefix + "-" + serial
	}
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '/' || r == '.' {
			return '_'
		}
		return r
	}, s)
	if !serialRE.MatchString(s) {
		return "", fmt.Errorf("detected serial %q is not usable as a thing name: set device.serial", s)
	}
	return s, nil
}
