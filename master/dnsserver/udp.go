package dnsserver

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// serveUDP answers UDP queries until the socket is closed: one reader per CPU, each answering
// what it reads itself, with no goroutine per query and no hop between goroutines (miekg/dns's
// server spawns one per packet; this halves the work per query on a small machine). A packet
// that is not a query is dropped.
func (s *Server) serveUDP() error {
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := make([]byte, dns.MaxMsgSize)
			out := make([]byte, 0, dns.MaxMsgSize)
			for {
				n, from, err := s.udp.ReadFrom(in)
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						continue
					}
					select {
					case errc <- err:
					default:
					}
					return
				}
				start := time.Now()
				r := new(dns.Msg)
				if r.Unpack(in[:n]) != nil || r.Response {
					continue
				}
				m := s.Answer(r, false)
				packed, err := m.PackBuffer(out)
				if err != nil {
					s.cfg.Logger.Debug("dns: answer not packed", "err", err)
					continue
				}
				if _, err := s.udp.WriteTo(packed, from); err != nil {
					s.cfg.Logger.Debug("dns: answer not written", "err", err)
				}
				s.observe(r, m, start)
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}
