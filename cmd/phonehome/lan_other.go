//go:build !linux

package main

import (
	"context"
	"errors"
	"io"
	"sync"

	"phonehome/internal/capture/proxy"
	"phonehome/internal/flow"
)

type interception struct{}

var errNeedLinux = errors.New("--spoof needs Linux (ARP spoofing, nftables, SO_ORIGINAL_DST)")

func startSpoofMode(context.Context, runOpts, *proxy.Proxy, int, func(*flow.Flow), *sync.WaitGroup, io.Writer) (*interception, error) {
	return nil, errNeedLinux
}

func (*interception) stop(io.Writer) error { return nil }

func spoofOnly(context.Context, lanOpts, string, io.Writer) error { return errNeedLinux }
