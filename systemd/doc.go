// Package systemd holds edgecam's service unit (edgecam.service) and check.sh, which checks
// it with systemd-analyze; its tests keep the unit verified, hardened (exposure at most
// 2.5) and wired to what the agent does (sd_notify, watchdog, reload).
package systemd
