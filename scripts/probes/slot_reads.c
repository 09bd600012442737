/* Random reads of whole multi-line records, each record prefetched AHEAD
 * records before it is read, with WORK dependent multiplications and NOISE
 * bytes of streaming writes between records: the replay loop's access
 * pattern without its code (BENCHMARKS.md, session 15).
 *   cc -O2 slot_reads.c -o slot_reads
 *   taskset -c 0 ./slot_reads MB RECORD AHEAD WORK NOISE
 * e.g. `64 648 9 1000 2048`: 64 MB of 648-byte records (a replay slot),
 * prefetched nine ahead, ~1,000 multiplications and 2 KiB of writes a record.
 * Compare MB 64 with MB 1 (everything in cache); `HUGE=1` puts the
 * records on transparent huge pages. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <xmmintrin.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  size_t mb=atoi(argv[1]); size_t rec=atoi(argv[2]); int ahead=atoi(argv[3]);
  int work=atoi(argv[4]); size_t noise=atoi(argv[5]);
  size_t sz=mb<<20, n=1<<20, records=sz/rec;
  char*p=mmap(0,sz+(2<<20),PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  p=(char*)(((uintptr_t)p+(2<<20)-1)&~((uintptr_t)(2<<20)-1));
  if(getenv("HUGE")) madvise(p,sz,MADV_HUGEPAGE);
  for(size_t i=0;i<sz;i+=64)p[i]=(char)i;
  size_t ring=1<<20; char*buf=malloc(ring+noise); size_t pos=0;
  uint32_t*idx=malloc((n+64)*4); uint64_t x=88172645463325252ULL;
  for(size_t i=0;i<n+64;i++){x^=x<<13;x^=x>>7;x^=x<<17;idx[i]=x%records;}
  uint64_t acc=1;
  double t0=now();
  for(size_t i=0;i<n;i++){
    if(ahead){
      char*r=p+(size_t)idx[i+ahead]*rec;
      for(uintptr_t l=(uintptr_t)r&~63;l<(uintptr_t)r+rec;l+=64) _mm_prefetch((char*)l,_MM_HINT_T0);
    }
    for(int k=0;k<work;k++) acc=acc*6364136223846793005ULL+1442695040888963407ULL;
    if(noise){memset(buf+pos,(int)acc,noise); pos=(pos+noise)&(ring-1);}
    char*r=p+(size_t)idx[i]*rec;
    for(size_t o=0;o<rec;o+=64) acc+=(unsigned char)r[o];
  }
  double t1=now();
  printf("mb=%zu record=%zu ahead=%d work=%d noise=%zu: %.1f ns/record\n",mb,rec,ahead,work,noise,(t1-t0)/n*1e9);
  return (int)(acc&0);}
