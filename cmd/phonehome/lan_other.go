//go:build !linux

package main

import (
	"context"
	"errors"
	"io"

	"phonehome/internal/capture/proxy"
	"phonehome/internal/flow"
)

type spoofMode struct{}

var errNeedLinux = errors.New("--spoof needs Linux (ARP spoofing, nftables, SO_ORIGINAL_DST)")

func startSpoofMode(runOpts, *proxy.Proxy, int, func(*flow.Flow), io.Writer) (*spoofMode, error) {
	return nil, errNeedLinux
}

func (*spoofMode) Run(context.Context) error { return nil }

func (*spoofMode) Close() error { return nil }

func spoofOnly(context.Context, lanOpts, string, io.Writer) error { return errNeedLinux }
